"""Feed links and feed bodies: units of work on a sync Session (no aiohttp).

What belongs here: creating, listing, rotating and revoking feed links (each
with its change-log entry, DESIGN rule 2), deriving and checking tokens,
the renderer that keeps each appointment's VEVENT texts current (rule 5),
and assembling a feed body from those cached texts. What does not: HTTP
(`bridge.feeds.routes`), the per-request fast path and the in-memory cache
(`bridge.feeds.serve`), iCalendar syntax (`bridge.domain.ical`).

Tokens: `base64url(HMAC-SHA256(secret, "feed:<id>:<salt>"))` — 256 bits, not
guessable from ids or emails, re-derivable by the server (so `feed list` can
show URLs again), while the database keeps only a random salt and
`token_hash = HMAC-SHA256(secret, token)`: a dump alone reveals no URL.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.db import repo
from bridge.db.models import (
    Appointment,
    BlockedTime,
    ChangeEntry,
    Company,
    FeedLink,
    Group,
    GroupMember,
    Staff,
    utcnow,
)
from bridge.domain import ical
from bridge.domain.secrets import random_token, token_hash
from bridge.errors import Conflict, Invalid, NotFound

log = logging.getLogger("calbridge.feeds")

SCOPES = ("staff", "group", "company")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_LEVEL_COLUMN = {
    "full": Appointment.feed_full,
    "limited": Appointment.feed_limited,
    "busy": Appointment.feed_busy,
}


# --- tokens and links -----------------------------------------------------------------

def derive_token(secret: bytes, link_id: int, salt: str) -> str:
    digest = hmac.new(secret, f"feed:{link_id}:{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_of(link: FeedLink, secret: bytes) -> str:
    return derive_token(secret, link.id, link.token_salt)


def feed_urls(base_url: str, token: str, name: str) -> dict[str, str]:
    """The URL in every form a calendar app asks for."""
    https = f"{base_url.rstrip('/')}/feeds/{token}.ics"
    webcal = "webcal://" + https.split("://", 1)[1]
    quoted = urllib.parse.quote(webcal, safe="")
    return {
        "https": https,
        "webcal": webcal,
        "google": f"https://calendar.google.com/calendar/render?cid={quoted}",
        "outlook": "https://outlook.live.com/calendar/0/addfromweb?"
        + urllib.parse.urlencode({"url": webcal, "name": name}, quote_via=urllib.parse.quote),
    }


@dataclass(frozen=True)
class Target:
    scope: str
    name: str
    timezone: str
    staff_id: int | None = None
    group_id: int | None = None


def _target(s: Session, link: FeedLink) -> Target:
    if link.scope == "staff":
        staff = s.get(Staff, link.staff_id)
        assert staff is not None
        return Target("staff", staff.name, staff.timezone, staff_id=staff.id)
    company = s.get(Company, link.company_id)
    assert company is not None
    if link.scope == "group":
        group = s.get(Group, link.group_id)
        assert group is not None
        return Target("group", f"{group.name} ({company.name})", company.timezone,
                      group_id=group.id)
    return Target("company", company.name, company.timezone)


def link_json(s: Session, link: FeedLink, secret: bytes, base_url: str) -> dict[str, Any]:
    """A link as the API and the CLI show it (URLs only while it is live)."""
    target = _target(s, link)
    data: dict[str, Any] = {
        "id": link.id,
        "scope": link.scope,
        "staff_id": link.staff_id,
        "group_id": link.group_id,
        "privacy": link.privacy,
        "label": link.label,
        "name": target.name,
        "created_at": link.created_at.isoformat(),
        "rotated_at": link.rotated_at.isoformat() if link.rotated_at else None,
        "revoked_at": link.revoked_at.isoformat() if link.revoked_at else None,
        "status": "revoked" if link.revoked_at else "active",
    }
    if link.revoked_at is None:
        data["urls"] = feed_urls(base_url, token_of(link, secret), target.name)
    return data


def create_feed(
    s: Session, company_id: int, payload: dict[str, Any], secret: bytes, actor: repo.Actor
) -> FeedLink:
    """A new link for a staff member (`staff_id`), a group (`group_id`) or the
    company (`scope: company`), at a privacy level (default `full`)."""
    allowed = {"scope", "staff_id", "group_id", "privacy", "label"}
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0])
    scope = payload.get("scope")
    if scope is None:
        scope = "staff" if "staff_id" in payload else "group" if "group_id" in payload else None
    if scope not in SCOPES:
        raise Invalid("scope must be one of staff, group, company", field="scope")
    privacy = payload.get("privacy", "full")
    if privacy not in ical.PRIVACY_LEVELS:
        raise Invalid("privacy must be one of full, limited, busy", field="privacy")
    label = payload.get("label", "")
    if not isinstance(label, str) or len(label) > 200:
        raise Invalid("label must be a string of at most 200 characters", field="label")
    staff_id = group_id = None
    if scope == "staff":
        staff_id = _int(payload, "staff_id")
        repo.get_staff(s, company_id, staff_id)
        if "group_id" in payload:
            raise Invalid("a staff feed takes no group_id", field="group_id")
    elif scope == "group":
        group_id = _int(payload, "group_id")
        repo.get_group(s, company_id, group_id)
        if "staff_id" in payload:
            raise Invalid("a group feed takes no staff_id", field="staff_id")
    else:
        for name in ("staff_id", "group_id"):
            if name in payload:
                raise Invalid(f"a company feed takes no {name}", field=name)
    salt = random_token(16)
    link = FeedLink(company_id=company_id, scope=scope, staff_id=staff_id, group_id=group_id,
                    privacy=privacy, label=label, token_salt=salt,
                    token_hash="pending-" + random_token(24), created_at=utcnow())
    s.add(link)
    s.flush()
    link.token_hash = token_hash(derive_token(secret, link.id, salt), secret)
    s.flush()
    repo.log_change(s, company_id, "feed.created", "feed", link.id, actor,
                    {"scope": scope, "staff_id": staff_id, "group_id": group_id,
                     "privacy": privacy, "label": label}, staff_id=staff_id)
    return link


def _int(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"{name} must be an integer", field=name)
    return value


def get_feed(s: Session, company_id: int, feed_id: int) -> FeedLink:
    link = s.get(FeedLink, feed_id)
    if link is None or link.company_id != company_id:
        raise NotFound(f"no feed link {feed_id}", field="feed_id")
    return link


def list_feeds(s: Session, company_id: int, *, include_revoked: bool = False) -> Sequence[FeedLink]:
    q = select(FeedLink).where(FeedLink.company_id == company_id)
    if not include_revoked:
        q = q.where(FeedLink.revoked_at.is_(None))
    return s.execute(q.order_by(FeedLink.id)).scalars().all()


def rotate_feed(
    s: Session, company_id: int, feed_id: int, secret: bytes, actor: repo.Actor
) -> FeedLink:
    """A new token for the link; the old URL stops working at commit."""
    link = get_feed(s, company_id, feed_id)
    if link.revoked_at is not None:
        raise Conflict("this feed link is revoked; create a new one", field="feed_id")
    link.token_salt = random_token(16)
    link.token_hash = token_hash(token_of(link, secret), secret)
    link.rotated_at = utcnow()
    s.flush()
    repo.log_change(s, company_id, "feed.rotated", "feed", link.id, actor, {},
                    staff_id=link.staff_id)
    return link


def revoke_feed(s: Session, company_id: int, feed_id: int, actor: repo.Actor) -> FeedLink:
    """Revoke for good (idempotent: revoking twice changes nothing)."""
    link = get_feed(s, company_id, feed_id)
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        s.flush()
        repo.log_change(s, company_id, "feed.revoked", "feed", link.id, actor, {},
                        staff_id=link.staff_id)
    return link


@dataclass(frozen=True)
class LinkState:
    """What a request needs to know of a token: which feed, at which version."""

    link_id: int
    company_id: int
    version: int


def resolve_token(s: Session, token: str, secret: bytes) -> LinkState | None:
    """The live link of a token, or None (malformed, unknown, rotated, revoked).

    The row is found by the keyed hash (an index look-up, so timing says
    nothing about how close a guess was); the hash is then compared again
    in constant time."""
    if not TOKEN_RE.fullmatch(token):
        return None
    wanted = token_hash(token, secret)
    row = s.execute(
        select(FeedLink.id, FeedLink.company_id, FeedLink.token_hash, Company.change_seq)
        .join(Company, Company.id == FeedLink.company_id)
        .where(FeedLink.token_hash == wanted, FeedLink.revoked_at.is_(None))
    ).one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, wanted):
        return None
    return LinkState(row.id, row.company_id, row.change_seq)


# --- rendering on write (DESIGN rule 5) ---------------------------------------------------

def render_appointment_texts(s: Session, appt: Appointment) -> None:
    """Refresh the appointment's VEVENT text of every privacy level.
    Registered in `repo.APPOINTMENT_RENDERERS`: runs inside each write."""
    texts = ical.render_all_levels(appt)
    appt.feed_full, appt.feed_limited, appt.feed_busy = (
        texts["full"], texts["limited"], texts["busy"])


def render_blocked_time(s: Session | None, row: BlockedTime, timezone: str | None = None) -> None:
    """Refresh a blocked time's "Busy" VEVENT text (call after writing `ical`)."""
    if timezone is None:
        assert s is not None
        staff = s.get(Staff, row.staff_id)
        timezone = staff.timezone if staff is not None else "UTC"
    row.feed_busy = _render_blocked(row.ical, row.id, row.updated_at, timezone)


def _render_blocked(raw: str, row_id: int, updated_at: dt.datetime, timezone: str) -> str:
    return ical.render_blocked_busy(raw, key=str(row_id), updated_at=updated_at,
                                    timezone=timezone).text


# --- assembling a feed -----------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# Changes of these entities can be applied to a cached feed row by row; any
# other (staff renamed, group membership, blocked time, ...) rebuilds it.
DELTA_ENTITIES = frozenset({"appointment", "feed"})
MAX_DELTA = 1000

# appointment id -> (sort key, VEVENT text, TZID or None)
EventParts = dict[int, tuple[tuple[int, int], str, str | None]]


@dataclass(frozen=True)
class FeedParts:
    """What a feed body is made of, kept so later changes can be applied to it."""

    header: ical.FeedHeader
    events: EventParts
    blocked: tuple[str, ...]
    blocked_tzids: frozenset[str]


@dataclass(frozen=True)
class FeedBody:
    body: bytes
    etag: str  # quoted strong ETag
    last_modified: str  # IMF-fixdate
    modified: dt.datetime
    events: int
    parts: FeedParts | None = None


def window(today: dt.date, days_back: int, days_ahead: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(today - dt.timedelta(days=days_back), dt.time(), dt.UTC)
    end = dt.datetime.combine(today + dt.timedelta(days=days_ahead), dt.time(), dt.UTC)
    return start, end


def _members(link: FeedLink) -> Any:
    return select(GroupMember.staff_id).where(GroupMember.group_id == link.group_id)


def _appointment_parts(
    s: Session, link: FeedLink, start: dt.datetime, end: dt.datetime,
    ids: set[int] | None = None,
) -> EventParts:
    """The VEVENT texts of the link's appointments in the window (of `ids` only, if given)."""
    column = _LEVEL_COLUMN[link.privacy]
    q = (
        select(column, Appointment.timezone, Appointment.all_day, Staff.name, Appointment.id,
               Appointment.first_occurrence)
        .join(Staff, Staff.id == Appointment.staff_id)
        .where(Appointment.company_id == link.company_id,
               Appointment.status != "cancelled",
               Appointment.last_occurrence > start,
               Appointment.first_occurrence < end)
    )
    if link.scope == "staff":
        q = q.where(Appointment.staff_id == link.staff_id)
    elif link.scope == "group":
        q = q.where(Appointment.staff_id.in_(_members(link)))
    if ids is not None:
        q = q.where(Appointment.id.in_(ids))
    team = link.scope != "staff"
    parts: EventParts = {}
    for text, timezone, all_day, staff_name, appt_id, first in s.execute(q):
        if text is None:  # written by a process without the renderer: render now
            appt = s.get(Appointment, appt_id)
            assert appt is not None
            text = ical.render_appointment(appt, link.privacy)
        if team:
            text = ical.with_staff_name(text, staff_name)
        key = ((first - _EPOCH) // _MICROSECOND, appt_id)
        parts[appt_id] = (key, text, None if all_day else timezone)
    return parts


def _blocked_parts(
    s: Session, link: FeedLink, start: dt.datetime, end: dt.datetime
) -> tuple[tuple[str, ...], frozenset[str]]:
    """Blocked time as "Busy" (group and company feeds only: a staff member
    already has their own blocked time in their calendar)."""
    if link.scope == "staff":
        return (), frozenset()
    q = (
        select(BlockedTime.feed_busy, BlockedTime.id, BlockedTime.ical,
               BlockedTime.updated_at, Staff.timezone)
        .join(Staff, Staff.id == BlockedTime.staff_id)
        .where(BlockedTime.company_id == link.company_id,
               BlockedTime.last_occurrence > start,
               BlockedTime.first_occurrence < end)
        .order_by(BlockedTime.first_occurrence, BlockedTime.id)
    )
    if link.scope == "group":
        q = q.where(BlockedTime.staff_id.in_(_members(link)))
    texts: list[str] = []
    tzids: set[str] = set()
    for text, row_id, raw, updated_at, timezone in s.execute(q):
        if text is None:
            try:
                text = _render_blocked(raw, row_id, updated_at, timezone)
            except Exception:  # one unreadable item must not take the feed down
                log.warning("blocked time %s could not be rendered; left out", row_id)
                continue
        tzids |= ical.tzids_in(text)
        texts.append(text)
    return tuple(texts), frozenset(tzids)


def _apply_changes(
    s: Session, link: FeedLink, previous: FeedParts, since: int, start: dt.datetime,
    end: dt.datetime,
) -> FeedParts | None:
    """The previous parts with the appointments changed after `since` fetched
    again, or None when the changes need a full rebuild."""
    entries = s.execute(
        select(ChangeEntry.entity, ChangeEntry.entity_id)
        .where(ChangeEntry.company_id == link.company_id, ChangeEntry.seq > since)
        .limit(MAX_DELTA + 1)
    ).all()
    if len(entries) > MAX_DELTA or any(e.entity not in DELTA_ENTITIES for e in entries):
        return None
    ids = {e.entity_id for e in entries if e.entity == "appointment"}
    events = dict(previous.events)  # a copy: the previous body may still be in use
    for appt_id in ids:
        events.pop(appt_id, None)
    if ids:
        events.update(_appointment_parts(s, link, start, end, ids))
    return FeedParts(previous.header, events, previous.blocked, previous.blocked_tzids)


def build_feed(
    s: Session, link_id: int, *, today: dt.date, days_back: int, days_ahead: int,
    refresh_minutes: int, warn_bytes: int, previous: FeedBody | None = None,
    since: int | None = None,
) -> FeedBody:
    """The whole feed of a link from the cached VEVENT texts.

    With `previous` (the body built for change-log position `since`, same
    window and settings), only the appointments changed since are read
    again; otherwise one query for the appointments (and one for blocked
    time in group and company feeds)."""
    link = s.get(FeedLink, link_id)
    if link is None:
        raise NotFound("no such feed")
    start, end = window(today, days_back, days_ahead)
    parts = None
    if previous is not None and previous.parts is not None and since is not None:
        parts = _apply_changes(s, link, previous.parts, since, start, end)
    if parts is None:
        target = _target(s, link)
        blocked, blocked_tzids = _blocked_parts(s, link, start, end)
        parts = FeedParts(ical.FeedHeader(target.name, target.timezone, refresh_minutes),
                          _appointment_parts(s, link, start, end), blocked, blocked_tzids)
    ordered = sorted(parts.events.values(), key=lambda p: p[0])
    tzids = {tz for _, _, tz in ordered if tz is not None} | parts.blocked_tzids
    vevents = [text for _, text, _ in ordered]
    vevents.extend(parts.blocked)
    body = ical.assemble_feed(parts.header, vevents, tzids).encode()
    if len(body) > warn_bytes:
        log.warning("feed link %s is %d bytes (warn_bytes %d): Google drops feeds past about 1 MB",
                    link.id, len(body), warn_bytes)
    etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
    last_change = s.execute(
        select(ChangeEntry.created_at)
        .where(ChangeEntry.company_id == link.company_id)
        .order_by(ChangeEntry.seq.desc()).limit(1)
    ).scalar_one_or_none()
    # The window moves daily, so the body may change at midnight without a
    # change-log entry: Last-Modified is never older than the window's day.
    day_start = dt.datetime.combine(today, dt.time(), dt.UTC)
    modified = max(last_change or day_start, day_start).replace(microsecond=0)
    return FeedBody(body, etag, format_datetime(modified, usegmt=True), modified, len(vevents),
                    parts)
