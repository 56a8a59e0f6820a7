"""Units of work for calendar links: create/list/update/delete, the poller's
claims, storing a read's busy snapshot, health and incidents, and planning
the write-out of appointments from the change log.

Plain functions on a sync `Session` inside the caller's transaction (the
API, the CLI and the scheduler run the same ones). No network here: the
scheduler does the I/O between two of these units of work.

Health (per link): `pending` until the first read; `ok`; `failing` after
`[sync] failure_threshold` consecutive errors; `auth_failed` on the first
401/403. Entering failing/auth_failed from ok/pending opens an incident
(change-log `calendar_link.failed` + one notice); the first success closes
it (`calendar_link.recovered` + one notice). Polls in between add nothing.
A failed read never touches the busy snapshot (the last good one stays).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from bridge.config import Settings
from bridge.db import repo
from bridge.db.models import (
    AdminUser,
    Appointment,
    CalendarLink,
    CalendarPush,
    ChangeEntry,
    Company,
    CompanyAlerts,
    ExternalBusy,
    Staff,
    utcnow,
)
from bridge.domain import appointments as rules
from bridge.domain.busy import OWN_MARKER, Interval
from bridge.domain.ical import CRLF, render_appointment, vtimezone
from bridge.errors import Invalid, NotFound, PreconditionFailed
from bridge.sync import crypto
from bridge.sync.sources import PushDone, PushOp, SourceError, display_url, normalise_url

KINDS = ("ics", "caldav")
HEALTH = ("pending", "ok", "failing", "auth_failed")
INCIDENT = ("failing", "auth_failed")
FIELDS = {"kind", "label", "url", "server_url", "username", "password", "calendar_url",
          "check_conflicts", "add_appointments", "interval_seconds", "enabled"}
SYNC_ACTOR = repo.Actor("sync", "calendar-sync")


def link_json(link: CalendarLink) -> dict[str, Any]:
    """A link as the API shows it: never a credential or a secret URL."""
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {
        "id": link.id, "staff_id": link.staff_id, "kind": link.kind, "label": link.label,
        "url": link.url_display, "server_url": link.server_url or None,
        "username": link.username or None, "calendar_url": link.calendar_url or None,
        "check_conflicts": link.check_conflicts, "add_appointments": link.add_appointments,
        "enabled": link.enabled, "interval_seconds": link.interval_seconds,
        "health": link.health, "consecutive_failures": link.consecutive_failures,
        "last_error": link.last_error or None, "last_error_at": iso(link.last_error_at),
        "last_success_at": iso(link.last_success_at), "last_polled_at": iso(link.last_polled_at),
        "next_poll_at": iso(link.next_poll_at), "busy_intervals": link.busy_count,
        "push_error": link.push_error or None,
        "version": link.version, "created_at": iso(link.created_at),
        "updated_at": iso(link.updated_at),
    }


def _bool(payload: Mapping[str, Any], name: str, default: bool) -> bool:
    value = payload.get(name, default)
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false", field=name)
    return value


def _text(payload: Mapping[str, Any], name: str, max_len: int, required: bool = False) -> str:
    return rules.check_text(payload.get(name), name, max_len, required=required)


def _interval(payload: Mapping[str, Any], settings: Settings, default: int) -> int:
    value = payload.get("interval_seconds", default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid("interval_seconds must be an integer", field="interval_seconds")
    low = settings.sync.min_interval_seconds
    if not low <= value <= 86_400:
        raise Invalid(f"interval_seconds must be between {low} and 86400",
                      field="interval_seconds")
    return value


def _only(payload: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0])


def create_link(s: Session, settings: Settings, company_id: int, staff_id: int,
                payload: Mapping[str, Any], actor: repo.Actor) -> CalendarLink:
    _only(payload, FIELDS)
    staff = repo.get_staff(s, company_id, staff_id)
    kind = payload.get("kind")
    if kind not in KINDS:
        raise Invalid("kind must be 'ics' or 'caldav'", field="kind")
    check = _bool(payload, "check_conflicts", True)
    add = _bool(payload, "add_appointments", False)
    if not check and not add:
        raise Invalid("a link must check for conflicts, add appointments, or both",
                      field="check_conflicts")
    link = CalendarLink(
        company_id=company_id, staff_id=staff.id, kind=kind,
        label=_text(payload, "label", 200), check_conflicts=check, add_appointments=add,
        enabled=_bool(payload, "enabled", True),
        interval_seconds=_interval(payload, settings, settings.sync.default_interval_seconds),
        health="pending", consecutive_failures=0, last_error="", claimed_by="",
        http_etag="", http_last_modified="", sync_token="", ctag="", busy_count=0,
        push_error="", version=1, next_poll_at=utcnow(),
    )
    if kind == "ics":
        for name in ("server_url", "username", "password", "calendar_url"):
            if name in payload:
                raise Invalid(f"{name} is for CalDAV links", field=name)
        if add:
            raise Invalid("an ICS URL is read-only: appointments can only be added to a "
                          "CalDAV calendar", field="add_appointments")
        url = normalise_url(payload.get("url"), "url")
        link.url_display = display_url(url)
        link.credentials = crypto.encrypt(settings, {"url": url})
    else:
        if "url" in payload:
            raise Invalid("url is for ICS links; CalDAV links take server_url", field="url")
        server = normalise_url(payload.get("server_url"), "server_url")
        username = _text(payload, "username", 254, required=True)
        password = payload.get("password")
        if not isinstance(password, str) or not password or len(password) > 1000:
            raise Invalid("password is required (an app-specific password)", field="password")
        cal = payload.get("calendar_url") or server
        link.server_url, link.username = server, username
        link.calendar_url = normalise_url(cal, "calendar_url")
        link.url_display = display_url(link.calendar_url)
        link.credentials = crypto.encrypt(settings, {"password": password})
    s.add(link)
    s.flush()
    repo.log_change(s, company_id, "calendar_link.created", "calendar_link", link.id, actor,
                    {"kind": kind, "label": link.label, "url": link.url_display,
                     "check_conflicts": check, "add_appointments": add}, staff_id=staff.id)
    return link


def get_link(s: Session, company_id: int, staff_id: int | None, link_id: int) -> CalendarLink:
    link = s.get(CalendarLink, link_id)
    if link is None or link.company_id != company_id or (
            staff_id is not None and link.staff_id != staff_id):
        raise NotFound(f"no calendar link {link_id}", field="link_id")
    return link


def list_links(s: Session, company_id: int, staff_id: int | None = None) -> list[CalendarLink]:
    q = select(CalendarLink).where(CalendarLink.company_id == company_id)
    if staff_id is not None:
        repo.get_staff(s, company_id, staff_id)
        q = q.where(CalendarLink.staff_id == staff_id)
    return list(s.execute(q.order_by(CalendarLink.id)).scalars())


def update_link(s: Session, settings: Settings, company_id: int, staff_id: int, link_id: int,
                payload: Mapping[str, Any], actor: repo.Actor,
                if_match: int | None = None) -> CalendarLink:
    _only(payload, FIELDS - {"kind"})
    link = get_link(s, company_id, staff_id, link_id)
    if if_match is not None and if_match != link.version:
        raise PreconditionFailed("the calendar link changed since you read it")
    check = _bool(payload, "check_conflicts", link.check_conflicts)
    add = _bool(payload, "add_appointments", link.add_appointments)
    if not check and not add:
        raise Invalid("a link must check for conflicts, add appointments, or both",
                      field="check_conflicts")
    if add and link.kind == "ics":
        raise Invalid("an ICS URL is read-only", field="add_appointments")
    changed: list[str] = []
    secret = crypto.decrypt(settings, link.credentials)
    refetch = False
    if link.kind == "ics":
        for name in ("server_url", "username", "password", "calendar_url"):
            if name in payload:
                raise Invalid(f"{name} is for CalDAV links", field=name)
        if "url" in payload:
            url = normalise_url(payload["url"], "url")
            if url != secret.get("url"):
                secret["url"], link.url_display = url, display_url(url)
                changed.append("url")
                refetch = True
    else:
        if "url" in payload:
            raise Invalid("url is for ICS links; CalDAV links take server_url", field="url")
        if "server_url" in payload:
            link.server_url = normalise_url(payload["server_url"], "server_url")
            changed.append("server_url")
        if "username" in payload:
            link.username = _text(payload, "username", 254, required=True)
            changed.append("username")
        if "password" in payload:
            pw = payload["password"]
            if not isinstance(pw, str) or not pw or len(pw) > 1000:
                raise Invalid("password must be a non-empty string", field="password")
            secret["password"] = pw
            changed.append("password")
        if "calendar_url" in payload:
            link.calendar_url = normalise_url(payload["calendar_url"], "calendar_url")
            link.url_display = display_url(link.calendar_url)
            changed.append("calendar_url")
        refetch = bool(changed)
    for name in ("label",):
        if name in payload:
            link.label = _text(payload, name, 200)
            changed.append(name)
    if check != link.check_conflicts:
        link.check_conflicts = check
        changed.append("check_conflicts")
        if not check:
            _replace_busy(s, link, [])
            link.window_end = None
    if add != link.add_appointments:
        link.add_appointments = add
        changed.append("add_appointments")
        link.push_cursor = None  # switched on again: check every upcoming appointment
    if {"server_url", "calendar_url"} & set(changed):
        # Another calendar: write every upcoming appointment there afresh.
        s.execute(delete(CalendarPush).where(CalendarPush.link_id == link.id))
        link.push_cursor, link.push_error = None, ""
    if "enabled" in payload:
        link.enabled = _bool(payload, "enabled", link.enabled)
        changed.append("enabled")
    if "interval_seconds" in payload:
        link.interval_seconds = _interval(payload, settings, link.interval_seconds)
        changed.append("interval_seconds")
    if not changed:
        return link
    link.credentials = crypto.encrypt(settings, secret)
    if refetch:
        link.http_etag = link.http_last_modified = link.sync_token = link.ctag = ""
    link.next_poll_at = utcnow()  # read again with the new settings now
    link.version += 1
    link.updated_at = utcnow()
    repo.log_change(s, company_id, "calendar_link.updated", "calendar_link", link.id, actor,
                    {"fields": sorted(set(changed)), "label": link.label},
                    staff_id=link.staff_id)
    return link


def delete_link(s: Session, company_id: int, staff_id: int, link_id: int, actor: repo.Actor,
                if_match: int | None = None) -> None:
    link = get_link(s, company_id, staff_id, link_id)
    if if_match is not None and if_match != link.version:
        raise PreconditionFailed("the calendar link changed since you read it")
    repo.log_change(s, company_id, "calendar_link.deleted", "calendar_link", link.id, actor,
                    {"label": link.label, "url": link.url_display}, staff_id=link.staff_id)
    s.execute(delete(ExternalBusy).where(ExternalBusy.link_id == link.id))
    s.execute(delete(CalendarPush).where(CalendarPush.link_id == link.id))
    s.delete(link)


def _alerts_row(s: Session, company_id: int) -> CompanyAlerts | None:
    return s.get(CompanyAlerts, company_id)


def get_policy(s: Session, company_id: int) -> dict[str, Any]:
    """The company's calendar-failure policy and where its notices go (the
    Slack URL only as its host: it is a secret)."""
    company = s.get(Company, company_id)
    assert company is not None
    row = _alerts_row(s, company_id)
    return {"on_calendar_failure": company.on_calendar_failure,
            "slack_webhook": (row.slack_display or None) if row else None,
            "email_admins": row.email_admins if row else True}


def set_policy(s: Session, settings: Settings, company_id: int, payload: Mapping[str, Any],
               actor: repo.Actor) -> dict[str, Any]:
    _only(payload, {"on_calendar_failure", "slack_webhook_url", "email_admins"})
    company = s.get(Company, company_id)
    assert company is not None
    before = get_policy(s, company_id)
    if "on_calendar_failure" in payload:
        value = payload["on_calendar_failure"]
        if value not in ("keep_booking", "stop_booking"):
            raise Invalid("on_calendar_failure must be keep_booking or stop_booking",
                          field="on_calendar_failure")
        company.on_calendar_failure = value
    if "slack_webhook_url" in payload or "email_admins" in payload:
        row = _alerts_row(s, company_id)
        if row is None:
            row = CompanyAlerts(company_id=company_id, slack_webhook="", slack_display="",
                                email_admins=True)
            s.add(row)
        if "slack_webhook_url" in payload:
            raw = payload["slack_webhook_url"]
            if raw in (None, ""):
                row.slack_webhook, row.slack_display = "", ""
            else:
                url = normalise_url(raw, "slack_webhook_url")
                row.slack_webhook = crypto.encrypt(settings, {"url": url})
                row.slack_display = display_url(url)
        if "email_admins" in payload:
            row.email_admins = _bool(payload, "email_admins", True)
        row.updated_at = utcnow()
        s.flush()
    after = get_policy(s, company_id)
    diff = {k: {"before": before[k], "after": after[k]} for k in after if before[k] != after[k]}
    if diff:
        repo.log_change(s, company_id, "company.updated", "company", company_id, actor,
                        {"changes": diff})
    return after


def _notice_targets(s: Session, settings: Settings, company_id: int
                    ) -> tuple[str, tuple[str, ...]]:
    """(Slack URL or "", admin emails) for a company's notices."""
    row = _alerts_row(s, company_id)
    slack = settings.alerts.slack_webhook_url
    if row is not None and row.slack_webhook:
        try:
            slack = str(crypto.decrypt(settings, row.slack_webhook)["url"])
        except crypto.CredentialError:
            pass
    admins: tuple[str, ...] = ()
    if row is None or row.email_admins:
        admins = tuple(s.execute(select(AdminUser.email).where(
            AdminUser.company_id == company_id).order_by(AdminUser.id)).scalars())
    return slack, admins


# --- the poller's side ----------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """Everything one poll of one link needs, read in the claim transaction."""

    link_id: int
    company_id: int
    staff_id: int
    kind: str
    timezone: str
    url: str  # ICS URL or CalDAV server URL (secret for ICS)
    username: str
    password: str
    calendar_url: str
    read: bool  # due for a read
    push: bool  # has appointments to write out
    etag: str
    last_modified: str
    sync_token: str
    ctag: str
    full: bool  # the busy window must slide: read even if unchanged


def _due(now: dt.datetime) -> Any:
    behind = select(Company.change_seq).where(Company.id == CalendarLink.company_id)
    return (
        CalendarLink.enabled.is_(True),
        or_(CalendarLink.claimed_until.is_(None), CalendarLink.claimed_until < now),
        or_(
            CalendarLink.next_poll_at <= now,
            CalendarLink.add_appointments.is_(True) & (CalendarLink.push_error == "") & (
                CalendarLink.push_cursor.is_(None)
                | (CalendarLink.push_cursor < behind.scalar_subquery())),
        ),
    )


def claim_due(s: Session, settings: Settings, worker: str, now: dt.datetime | None = None,
              limit: int | None = None) -> list[Job]:
    """Claim due links for `worker` (a lease of `[sync] lease_seconds`). On
    PostgreSQL, rows another worker is claiming are skipped (SKIP LOCKED);
    SQLite writers are serial (BEGIN IMMEDIATE)."""
    now = now or utcnow()
    q = (select(CalendarLink).where(*_due(now)).order_by(CalendarLink.next_poll_at)
         .limit(limit or settings.sync.batch))
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True, of=CalendarLink)
    links = list(s.execute(q).scalars())
    jobs: list[Job] = []
    lease = now + dt.timedelta(seconds=settings.sync.lease_seconds)
    horizon = now + dt.timedelta(days=settings.sync.window_days_ahead - 1)
    for link in links:
        link.claimed_by, link.claimed_until = worker, lease
        try:
            secret = crypto.decrypt(settings, link.credentials)
        except crypto.CredentialError:
            secret = {}
        staff = s.get(Staff, link.staff_id)
        assert staff is not None
        read = link.check_conflicts and link.next_poll_at <= now
        jobs.append(Job(
            link_id=link.id, company_id=link.company_id, staff_id=link.staff_id, kind=link.kind,
            timezone=staff.timezone,
            url=secret.get("url", "") if link.kind == "ics" else link.server_url,
            username=link.username, password=secret.get("password", ""),
            calendar_url=link.calendar_url, read=read, push=link.add_appointments,
            etag=link.http_etag, last_modified=link.http_last_modified,
            sync_token=link.sync_token, ctag=link.ctag,
            full=link.window_end is None or link.window_end < horizon,
        ))
    s.flush()
    return jobs


@dataclass(frozen=True)
class Notice:
    """An incident opened or closed: who to tell and what."""

    event: str  # calendar_link.failed | calendar_link.recovered
    link_id: int
    label: str
    url: str
    health: str
    error: str
    staff_name: str
    staff_email: str
    admin_emails: tuple[str, ...]
    company_name: str
    at: dt.datetime
    slack_url: str = ""  # the company's own, or [alerts] slack_webhook_url


def _next_poll(link: CalendarLink, settings: Settings, now: dt.datetime) -> dt.datetime:
    j = settings.sync.jitter
    factor = 1 + random.uniform(-j, j) if j else 1.0
    return now + dt.timedelta(seconds=link.interval_seconds * factor)


def _replace_busy(s: Session, link: CalendarLink, intervals: Sequence[Interval]) -> None:
    _store_busy(s, link, {"": list(intervals)}, incremental=False, deleted=())


def _store_busy(s: Session, link: CalendarLink, by_href: Mapping[str, Sequence[Interval]], *,
                incremental: bool, deleted: Sequence[str]) -> None:
    """Replace the link's snapshot whole, or (incremental) only the rows of
    the objects that changed or were deleted."""
    if incremental:
        touched = sorted(set(by_href) | set(deleted))
        for i in range(0, len(touched), 500):
            s.execute(delete(ExternalBusy).where(ExternalBusy.link_id == link.id,
                                                 ExternalBusy.href.in_(touched[i:i + 500])))
    else:
        s.execute(delete(ExternalBusy).where(ExternalBusy.link_id == link.id))
    rows = [{"link_id": link.id, "staff_id": link.staff_id, "start_at": a, "end_at": b,
             "href": href} for href, intervals in by_href.items() for a, b in intervals]
    if rows:
        s.execute(insert(ExternalBusy), rows)
    link.busy_count = int(s.execute(select(func.count()).select_from(ExternalBusy).where(
        ExternalBusy.link_id == link.id)).scalar_one()) if incremental else len(rows)


@dataclass
class Outcome:
    """The result of one job, recorded in one transaction."""

    ok: bool  # the whole job (read and write) succeeded
    read_ok: bool = False
    read_changed: bool = False
    busy: list[Interval] | None = None  # ICS
    busy_by_href: dict[str, list[Interval]] | None = None  # CalDAV, per object
    incremental: bool = False
    deleted: list[str] = field(default_factory=list)
    window_end: dt.datetime | None = None
    etag: str = ""
    last_modified: str = ""
    sync_token: str = ""
    ctag: str = ""
    error: SourceError | None = None


def record(s: Session, settings: Settings, worker: str, job: Job, outcome: Outcome,
           now: dt.datetime | None = None) -> Notice | None:
    """Store a job's result, release the claim, move the health state; the
    notice to send when an incident opened or closed."""
    now = now or utcnow()
    link = s.get(CalendarLink, job.link_id)
    if link is None or link.claimed_by != worker:
        return None  # deleted meanwhile, or the lease expired and another worker took it
    link.claimed_by, link.claimed_until = "", None
    if job.read:
        link.last_polled_at = now
    if job.read or not link.check_conflicts:  # a write-only link is due again on changes
        link.next_poll_at = _next_poll(link, settings, now)
    if job.read and outcome.read_ok:
        if outcome.read_changed and outcome.busy is not None:
            _replace_busy(s, link, outcome.busy)
            link.window_end = outcome.window_end
        elif outcome.read_changed and outcome.busy_by_href is not None:
            _store_busy(s, link, outcome.busy_by_href, incremental=outcome.incremental,
                        deleted=outcome.deleted)
            if not outcome.incremental:
                link.window_end = outcome.window_end
        link.http_etag, link.http_last_modified = outcome.etag, outcome.last_modified
        link.sync_token, link.ctag = outcome.sync_token, outcome.ctag
    if not (job.read or outcome.error is not None or (outcome.ok and link.health != "ok")):
        return None
    before = link.health
    if outcome.ok:
        link.health, link.consecutive_failures = "ok", 0
        link.last_success_at = now
    else:
        assert outcome.error is not None
        link.consecutive_failures += 1
        link.last_error, link.last_error_at = outcome.error.message[:2000], now
        if outcome.error.kind == "auth":
            link.health = "auth_failed"
        elif link.consecutive_failures >= settings.sync.failure_threshold:
            link.health = "failing"
        if not job.read:  # a failed write is retried at the next interval
            link.next_poll_at = _next_poll(link, settings, now)
    entering = link.health in INCIDENT and before not in INCIDENT
    leaving = link.health == "ok" and before in INCIDENT
    if not (entering or leaving):
        return None
    event = "calendar_link.failed" if entering else "calendar_link.recovered"
    if entering:
        link.incident_started_at = now
    data = {"link_id": link.id, "label": link.label, "kind": link.kind, "url": link.url_display,
            "health": link.health, "error": link.last_error if entering else None,
            "incident_started_at": link.incident_started_at.isoformat()
            if link.incident_started_at else None}
    repo.log_change(s, link.company_id, event, "calendar_link", link.id, SYNC_ACTOR, data,
                    staff_id=link.staff_id)
    if leaving:
        link.incident_started_at = None
    staff = s.get(Staff, link.staff_id)
    company = s.get(Company, link.company_id)
    assert staff is not None and company is not None
    slack, admins = _notice_targets(s, settings, link.company_id)
    return Notice(event, link.id, link.label, link.url_display, link.health,
                  link.last_error if entering else "", staff.name, staff.email, admins,
                  company.name, now, slack)


def release(s: Session, worker: str, link_id: int) -> None:
    link = s.get(CalendarLink, link_id)
    if link is not None and link.claimed_by == worker:
        link.claimed_by, link.claimed_until = "", None


# --- writing appointments out -------------------------------------------------------

def object_href(uid: str) -> str:
    """The stable name of an appointment's object in an external calendar."""
    return quote(uid.replace("/", "_"), safe="@._-") + ".ics"


def appointment_ical(appt: Appointment) -> str:
    """A VCALENDAR for an external calendar: the full VEVENT of the feeds,
    marked as ours so reading it back never counts it as busy time twice."""
    vevent = render_appointment(appt, "full")
    marker = f"{OWN_MARKER}:{appt.id}{CRLF}"
    vevent = vevent[: -len("END:VEVENT" + CRLF)] + marker + "END:VEVENT" + CRLF
    tz = "" if appt.all_day or appt.timezone in ("UTC", "Etc/UTC") else vtimezone(appt.timezone)
    return ("BEGIN:VCALENDAR" + CRLF + "VERSION:2.0" + CRLF
            + "PRODID:-//calbridge//calendar sync//EN" + CRLF + tz + vevent
            + "END:VCALENDAR" + CRLF)


@dataclass(frozen=True)
class PushPlan:
    ops: list[PushOp]
    versions: dict[int, int]
    cursor: int


PUSH_BATCH = 200


def plan_push(s: Session, link_id: int, now: dt.datetime | None = None) -> PushPlan | None:
    """What to write to a link: a PUT for each confirmed appointment of its
    staff member that changed since the cursor (or, the first time, every
    upcoming one), a DELETE for each one written before that is no longer
    confirmed or no longer theirs. Read from the change log (entity
    `appointment`), so edits from every side are followed."""
    now = now or utcnow()
    link = s.get(CalendarLink, link_id)
    if link is None or not link.add_appointments:
        return None
    head = repo.company_version(s, link.company_id)
    since = now - dt.timedelta(days=1)
    if link.push_cursor is None:
        ids = set(s.execute(select(Appointment.id).where(
            Appointment.staff_id == link.staff_id, Appointment.last_occurrence > since,
            Appointment.status == "confirmed")).scalars())
        cursor = head
    else:
        rows = s.execute(
            select(ChangeEntry.seq, ChangeEntry.entity_id).where(
                ChangeEntry.company_id == link.company_id, ChangeEntry.seq > link.push_cursor,
                ChangeEntry.seq <= head, ChangeEntry.entity == "appointment")
            .order_by(ChangeEntry.seq).limit(PUSH_BATCH)).all()
        ids = {r.entity_id for r in rows}
        cursor = rows[-1].seq if len(rows) == PUSH_BATCH else head
    pushed = {p.appointment_id: p for p in s.execute(select(CalendarPush).where(
        CalendarPush.link_id == link.id, CalendarPush.appointment_id.in_(ids))).scalars()} \
        if ids else {}
    ops: list[PushOp] = []
    versions: dict[int, int] = {}
    for appt_id in sorted(ids):
        appt = s.get(Appointment, appt_id)
        done = pushed.get(appt_id)
        wanted = (appt is not None and appt.staff_id == link.staff_id
                  and appt.status == "confirmed")
        if wanted and appt is not None:
            if done is not None and done.version == appt.version:
                continue
            href = done.href if done is not None else object_href(appt.uid)
            ops.append(PushOp(appt_id, "put", href, appointment_ical(appt)))
            versions[appt_id] = appt.version
        elif done is not None:
            ops.append(PushOp(appt_id, "delete", done.href))
    return PushPlan(ops, versions, cursor)


def record_push(s: Session, link_id: int, plan: PushPlan, done: Sequence[PushDone],
                error: SourceError | None) -> None:
    link = s.get(CalendarLink, link_id)
    if link is None:
        return
    for d in done:
        row = s.get(CalendarPush, (link_id, d.appointment_id))
        if d.action == "delete":
            if row is not None:
                s.delete(row)
            continue
        if row is None:
            s.add(CalendarPush(link_id=link_id, appointment_id=d.appointment_id, href=d.href,
                               version=plan.versions[d.appointment_id], remote_etag=d.etag,
                               updated_at=utcnow()))
        else:
            row.version, row.remote_etag = plan.versions[d.appointment_id], d.etag
            row.updated_at = utcnow()
    if error is None:
        link.push_cursor = max(plan.cursor, link.push_cursor or 0)
        link.push_error = ""
    else:
        link.push_error = error.message[:2000]
    s.flush()


def staff_degraded(s: Session, staff_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Per staff member, the conflict-checking links that are failing now."""
    out: dict[int, list[dict[str, Any]]] = {sid: [] for sid in staff_ids}
    if not staff_ids:
        return out
    rows = s.execute(select(CalendarLink).where(
        CalendarLink.staff_id.in_(staff_ids), CalendarLink.enabled.is_(True),
        CalendarLink.check_conflicts.is_(True), CalendarLink.health.in_(INCIDENT))
        .order_by(CalendarLink.id)).scalars()
    for link in rows:
        out[link.staff_id].append({
            "link_id": link.id, "label": link.label, "health": link.health,
            "since": link.incident_started_at.isoformat() if link.incident_started_at else None,
            "last_success_at": link.last_success_at.isoformat()
            if link.last_success_at else None})
    return out


def link_counts(s: Session) -> dict[str, int]:
    """Links per health state (for /metrics and the CLI)."""
    rows = s.execute(select(CalendarLink.health, func.count()).group_by(CalendarLink.health))
    return {h: int(n) for h, n in rows}
