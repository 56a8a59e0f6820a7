"""CalDAV units of work on the booking database (sync `Session`, no HTTP, no Radicale).

The Radicale plugins in `radicale_plugins/` call these inside the transaction
that `Storage.acquire_lock` opened; nothing here knows about WSGI or
status codes. A collection is a `Scope`: a staff member's own calendar
(appointments and blocked time, read-write) or a group's calendar (the
members' appointments, read-only). Appointment edits go through
`bridge.db.repo` (the same unit of work as the booking API); blocked time is
written here, with its change-log entries and its busy-interval index.
Sync tokens (RFC 6578) are positions in the company's change log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any, Literal

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from bridge.config import CaldavSettings
from bridge.db import repo
from bridge.db.models import (
    Appointment,
    BlockedTime,
    BusyInterval,
    ChangeEntry,
    Company,
    DavProperty,
    Group,
    GroupMember,
    Staff,
    utcnow,
)
from bridge.domain import caldav as mapping
from bridge.errors import BridgeError, Forbidden, NotFound, SyncTokenInvalid

SYNC_PREFIX = "urn:calbridge:sync:"
# Busy intervals are stored in pieces of at most this length, so a time-range
# query scans only the index entries that start in [range start - CHUNK, end).
CHUNK = dt.timedelta(days=7)
ITEM_ENTITIES = ("appointment", "blocked_time")


@dataclass(frozen=True)
class Scope:
    """One CalDAV collection: `calendar` of a staff member, or a `group`."""

    kind: Literal["calendar", "group"]
    company_id: int
    staff_id: int
    group_id: int | None = None

    @property
    def writable(self) -> bool:
        return self.kind == "calendar"


@dataclass(frozen=True)
class ItemRow:
    """What Radicale needs of one calendar object, without parsing it."""

    href: str
    uid: str
    text: str
    etag: str  # unquoted
    updated_at: dt.datetime
    kind: Literal["appointment", "blocked_time"]
    id: int

    @property
    def last_modified(self) -> str:
        return format_datetime(self.updated_at.astimezone(dt.UTC), usegmt=True)


@dataclass(frozen=True)
class PutResult:
    item: ItemRow
    created: bool
    # True when the stored text is octet-equal to the body (RFC 4791 §5.3.4:
    # only then may the response carry an ETag).
    exact: bool
    refused: tuple[str, ...] = ()


# --- rendering (also the APPOINTMENT_RENDERERS hook) ------------------------

def render_appointment(s: Session, appt: Appointment) -> None:
    """Store the CalDAV text of an appointment for its current ETag."""
    appt.dav_text = mapping.render_appointment(appt, appt.ical)
    appt.dav_etag = appt.etag


def _appointment_text(appt: Appointment) -> str:
    if appt.dav_text is not None and appt.dav_etag == appt.etag:
        return appt.dav_text
    return mapping.render_appointment(appt, appt.ical)  # written by a process without the hook


def _appt_item(appt: Appointment) -> ItemRow:
    return ItemRow(appt.href, appt.uid, _appointment_text(appt), appt.etag, appt.updated_at,
                   "appointment", appt.id)


def _blocked_item(b: BlockedTime) -> ItemRow:
    return ItemRow(b.href, b.uid, b.ical, b.etag, b.updated_at, "blocked_time", b.id)


# Reads select columns, not ORM objects: a PROPFIND of 10,000 items stays cheap.
_APPT_COLS = (
    Appointment.id, Appointment.href, Appointment.uid, Appointment.etag, Appointment.dav_text,
    Appointment.dav_etag, Appointment.updated_at, Appointment.all_day, Appointment.start_at,
    Appointment.end_at, Appointment.start_date, Appointment.end_date,
)
_BLOCKED_COLS = (
    BlockedTime.id, BlockedTime.href, BlockedTime.uid, BlockedTime.ical, BlockedTime.etag,
    BlockedTime.updated_at,
)


def _appt_rows(s: Session, q: Select[Appointment]) -> list[tuple[ItemRow, Any]]:
    out: list[tuple[ItemRow, Any]] = []
    for r in s.execute(q.with_only_columns(*_APPT_COLS)).all():
        text = r.dav_text if r.dav_text is not None and r.dav_etag == r.etag else None
        if text is None:
            appt = s.get(Appointment, r.id)
            assert appt is not None
            text = _appointment_text(appt)
        out.append((ItemRow(r.href, r.uid, text, r.etag, r.updated_at, "appointment", r.id), r))
    return out


def _blocked_rows(s: Session, q: Select[BlockedTime]) -> list[ItemRow]:
    return [ItemRow(r.href, r.uid, r.ical, r.etag, r.updated_at, "blocked_time", r.id)
            for r in s.execute(q.with_only_columns(*_BLOCKED_COLS)).all()]


# --- principals and collections ---------------------------------------------

def active_staff(s: Session, email: str) -> Staff | None:
    return s.execute(
        select(Staff).where(Staff.email == email.strip().lower(), Staff.active.is_(True))
    ).scalar_one_or_none()


def staff_groups(s: Session, staff: Staff) -> Sequence[Group]:
    return s.execute(
        select(Group).join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.staff_id == staff.id, Group.company_id == staff.company_id)
        .order_by(Group.slug)
    ).scalars().all()


def group_of(s: Session, staff: Staff, slug: str) -> Group | None:
    """The group `slug` of the staff member's company, if they belong to it."""
    return s.execute(
        select(Group).join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.staff_id == staff.id, Group.company_id == staff.company_id,
               Group.slug == slug)
    ).scalar_one_or_none()


def _appointments(scope: Scope) -> Select[Appointment]:
    q = select(Appointment).where(Appointment.dav_hidden.is_(False))
    if scope.kind == "calendar":
        return q.where(Appointment.staff_id == scope.staff_id)
    members = select(GroupMember.staff_id).where(GroupMember.group_id == scope.group_id)
    return q.where(Appointment.staff_id.in_(members), Appointment.company_id == scope.company_id)


def all_items(s: Session, scope: Scope) -> list[ItemRow]:
    items = [item for item, _ in _appt_rows(s, _appointments(scope))]
    if scope.kind == "calendar":
        items += _blocked_rows(s, select(BlockedTime).where(
            BlockedTime.staff_id == scope.staff_id))
    return items


def item_listing(s: Session, scope: Scope) -> list[tuple[str, str, str]]:
    """(href, unquoted ETag, HTTP date) of every item: what a Depth-1 listing shows."""
    rows = list(s.execute(_appointments(scope).with_only_columns(
        Appointment.href, Appointment.etag, Appointment.updated_at)).all())
    if scope.kind == "calendar":
        rows += s.execute(select(BlockedTime.href, BlockedTime.etag, BlockedTime.updated_at)
                          .where(BlockedTime.staff_id == scope.staff_id)).all()
    return [(href, etag, updated.strftime("%a, %d %b %Y %H:%M:%S GMT"))
            for href, etag, updated in rows]


def items_by_href(s: Session, scope: Scope, hrefs: Iterable[str], *,
                  for_update: bool = False) -> dict[str, ItemRow]:
    wanted = list(dict.fromkeys(hrefs))
    found: dict[str, ItemRow] = {}
    for chunk in (wanted[i:i + 500] for i in range(0, len(wanted), 500)):
        q = _appointments(scope).where(Appointment.href.in_(chunk))
        bq = select(BlockedTime).where(BlockedTime.staff_id == scope.staff_id,
                                       BlockedTime.href.in_(chunk))
        if for_update:  # the row a PUT/DELETE checks and then changes, locked
            q = q.with_for_update().execution_options(populate_existing=True)
            bq = bq.with_for_update().execution_options(populate_existing=True)
            found.update((a.href, _appt_item(a)) for a in s.execute(q).scalars())
            if scope.kind == "calendar":
                found.update((b.href, _blocked_item(b)) for b in s.execute(bq).scalars())
            continue
        found.update((item.href, item) for item, _ in _appt_rows(s, q))
        if scope.kind == "calendar":
            found.update((item.href, item) for item in _blocked_rows(s, bq))
    return found


def filtered_items(s: Session, scope: Scope, start: dt.datetime | None,
                   end: dt.datetime | None) -> list[tuple[ItemRow, bool]]:
    """Items that may overlap [start, end) (RFC 4791 §9.9), from the indexes
    only; the flag says the overlap is certain (no text needs parsing)."""
    lo = start or dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
    hi = end or mapping.FOREVER
    out: list[tuple[ItemRow, bool]] = []
    q = _appointments(scope).where(Appointment.first_occurrence < hi,
                                   Appointment.last_occurrence > lo)
    for item, a in _appt_rows(s, q):
        if a.all_day:
            assert a.start_date and a.end_date
            a_start = dt.datetime.combine(a.start_date, dt.time(), dt.UTC)
            a_end = dt.datetime.combine(a.end_date, dt.time(), dt.UTC)
        else:
            assert a.start_at and a.end_at
            a_start, a_end = a.start_at, a.end_at
        if a_start < hi and (a_end > lo or (a_end == a_start and a_start >= lo)):
            out.append((item, True))
    if scope.kind != "calendar":
        return out
    hits = select(BusyInterval.blocked_time_id).where(
        BusyInterval.staff_id == scope.staff_id, BusyInterval.start_at < hi,
        BusyInterval.start_at >= lo - CHUNK,
        or_(BusyInterval.end_at > lo, and_(BusyInterval.end_at == BusyInterval.start_at,
                                           BusyInterval.start_at >= lo)))
    matched = select(BlockedTime).where(BlockedTime.staff_id == scope.staff_id,
                                        BlockedTime.id.in_(hits))
    seen: set[int] = set()
    for b in _blocked_rows(s, matched):
        seen.add(b.id)
        out.append((b, True))
    # Recurrences indexed only partly: the range reaches past their index.
    partial = select(BlockedTime).where(
        BlockedTime.staff_id == scope.staff_id,
        BlockedTime.first_occurrence < hi, BlockedTime.last_occurrence > lo,
        or_(BlockedTime.indexed_until < hi, BlockedTime.indexed_from > lo))
    for b in _blocked_rows(s, partial):
        if b.id not in seen:
            out.append((b, False))
    return out


def has_uid(s: Session, scope: Scope, uid: str) -> bool:
    appt = s.execute(select(Appointment.id).where(
        Appointment.uid == uid, Appointment.staff_id == scope.staff_id)).first()
    if appt is not None:
        return True
    return s.execute(select(BlockedTime.id).where(
        BlockedTime.uid == uid, BlockedTime.staff_id == scope.staff_id)).first() is not None


def collection_etag(s: Session, scope: Scope) -> str:
    """getetag/getctag of a collection: the company's change-log position (every
    item change is logged, so it moves whenever the content does; it also
    moves for changes elsewhere in the company, which costs a client one
    cheap sync-collection) and the client-set properties. O(1)."""
    seq = s.execute(select(Company.change_seq).where(Company.id == scope.company_id)
                    ).scalar_one()
    parts: list[Any] = [scope, seq, sorted(get_props(s, scope).items())]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def last_modified(s: Session, scope: Scope) -> dt.datetime:
    latest = s.execute(_appointments(scope).with_only_columns(
        func.max(Appointment.updated_at))).scalar()
    if scope.kind == "calendar":
        blocked = s.execute(select(func.max(BlockedTime.updated_at)).where(
            BlockedTime.staff_id == scope.staff_id)).scalar()
        if blocked is not None and (latest is None or blocked > latest):
            latest = blocked
    if latest is None:
        return dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    if latest.tzinfo is None:  # an aggregate bypasses the column type
        latest = latest.replace(tzinfo=dt.UTC)
    return latest


def scope_path_key(scope: Scope) -> str:
    return f"{scope.kind}:{scope.staff_id}:{scope.group_id or ''}"


def get_props(s: Session, scope: Scope) -> dict[str, Any]:
    row = s.get(DavProperty, scope_path_key(scope))
    return dict(row.props) if row is not None else {}


def set_props(s: Session, scope: Scope, props: dict[str, str]) -> None:
    row = s.get(DavProperty, scope_path_key(scope))
    if row is None:
        s.add(DavProperty(path=scope_path_key(scope), props=props))
    else:
        row.props = props
    s.flush()


# --- sync-collection (RFC 6578) -----------------------------------------------

def sync_token(seq: int) -> str:
    return f"{SYNC_PREFIX}{seq}"


def changes_since(s: Session, scope: Scope, token: str) -> tuple[str, list[str] | None]:
    """(current token, hrefs changed since `token`); None for every item (no token)."""
    current = s.execute(select(Company.change_seq).where(Company.id == scope.company_id)
                        ).scalar_one()
    if not token:
        return sync_token(current), None
    if not token.startswith(SYNC_PREFIX) or not token[len(SYNC_PREFIX):].isdigit():
        raise SyncTokenInvalid("not a sync token of this server")
    since = int(token[len(SYNC_PREFIX):])
    if since > current:
        raise SyncTokenInvalid("the sync token is from the future")
    oldest = s.execute(select(func.min(ChangeEntry.seq)).where(
        ChangeEntry.company_id == scope.company_id)).scalar()
    if since < current and (oldest is None or oldest > since + 1):
        raise SyncTokenInvalid("the sync token has expired; sync again from scratch")
    entities: tuple[str, ...] = ITEM_ENTITIES + (("group",) if scope.kind == "group" else ())
    entries = s.execute(select(ChangeEntry).where(
        ChangeEntry.company_id == scope.company_id, ChangeEntry.seq > since,
        ChangeEntry.seq <= current, ChangeEntry.entity.in_(entities)).order_by(ChangeEntry.seq)
    ).scalars().all()
    if scope.kind == "calendar":
        staff_ids = {scope.staff_id}
    else:
        staff_ids = set(s.execute(select(GroupMember.staff_id).where(
            GroupMember.group_id == scope.group_id)).scalars())
    appt_ids: set[int] = set()
    hrefs: list[str] = []
    for e in entries:
        if e.entity == "group":
            if e.entity_id == scope.group_id and e.type.startswith("group.member"):
                raise SyncTokenInvalid("the group's members changed; sync again from scratch")
            continue
        before = e.data.get("before") if isinstance(e.data, dict) else None
        moved_from = before.get("staff_id") if isinstance(before, dict) else None
        if e.staff_id not in staff_ids and moved_from not in staff_ids:
            continue
        if e.entity == "appointment":
            appt_ids.add(e.entity_id)
        elif scope.kind == "calendar" and isinstance(e.data.get("href"), str):
            hrefs.append(e.data["href"])
    if appt_ids:
        hrefs += s.execute(select(Appointment.href).where(Appointment.id.in_(appt_ids))
                           ).scalars().all()
    return sync_token(current), list(dict.fromkeys(hrefs))


# --- writes ---------------------------------------------------------------------

def _refuse_cancel(company: Company) -> bool:
    return company.caldav_delete == "refuse"


def parse_for_put(text: str, settings: CaldavSettings,
                  now: dt.datetime | None = None) -> mapping.CalendarObject:
    """The checks and index of a PUT body that need no database (raises the refusal)."""
    return mapping.parse_object(text, max_occurrences=settings.max_occurrences,
                                now=now or utcnow())


def put_item(
    s: Session, scope: Scope, actor: repo.Actor, href: str, text: str, *,
    settings: CaldavSettings, now: dt.datetime | None = None,
    parsed: mapping.CalendarObject | BridgeError | None = None,
) -> PutResult:
    """Create or replace the calendar object at `href` (Radicale has checked
    If-Match/If-None-Match against the row locked in this transaction).
    `parsed`: `parse_for_put(text)`'s answer when it ran before the lock."""
    if not scope.writable:
        raise Forbidden("group calendars are read-only")
    now = now or utcnow()
    if isinstance(parsed, BridgeError):
        raise parsed
    obj = parsed or parse_for_put(text, settings, now)
    existing = items_by_href(s, scope, [href], for_update=True).get(href)
    if existing is not None and existing.kind == "appointment":
        return _edit_appointment(s, scope, actor, existing, obj)
    if existing is None:
        hidden = s.execute(select(Appointment).where(
            Appointment.href == href, Appointment.staff_id == scope.staff_id)).scalar()
        if hidden is not None:
            raise Forbidden("this appointment was removed from the calendar; "
                            "it cannot be created again")
    return _put_blocked(s, scope, actor, href, obj, existing, now)


def _edit_appointment(s: Session, scope: Scope, actor: repo.Actor, item: ItemRow,
                      obj: mapping.CalendarObject) -> PutResult:
    appt = repo.get_appointment(s, scope.company_id, item.id)
    edit = mapping.appointment_edit(appt, obj)
    payload = dict(edit.payload)
    refused = list(edit.refused)
    company = s.get(Company, scope.company_id)
    assert company is not None
    if payload.get("status") == "cancelled" and _refuse_cancel(company):
        payload.pop("status")
        refused.append("status (this company cancels bookings only in the booking system)")
    seq = repo.company_version(s, scope.company_id)
    _, changed = repo.update_appointment(s, scope.company_id, appt.id, payload, actor,
                                         if_match=item.etag, ical=obj.text)
    if changed and repo.company_version(s, scope.company_id) == seq:
        # Only client-only data changed (an alarm, a colour): the booking is the
        # same, but other devices must see the new ETag in sync-collection.
        repo.log_change(s, scope.company_id, "appointment.calendar_data_changed",
                        "appointment", appt.id, actor, {"fields": []}, staff_id=appt.staff_id)
    stored = _appt_item(appt)
    return PutResult(stored, False, exact=stored.text == obj.text, refused=tuple(refused))


def _put_blocked(s: Session, scope: Scope, actor: repo.Actor, href: str,
                 obj: mapping.CalendarObject, existing: ItemRow | None,
                 now: dt.datetime) -> PutResult:
    summary = mapping.busy_summary(obj)
    summary["href"] = href
    if existing is None:
        row = BlockedTime(company_id=scope.company_id, staff_id=scope.staff_id, uid=obj.uid,
                          href=href, version=1, etag=repo.new_etag(obj.uid, 1),
                          last_source=actor.source, created_at=now)
        s.add(row)
        kind = "blocked_time.created"
    else:
        found = s.get(BlockedTime, existing.id)
        assert found is not None
        row = found
        if row.uid != obj.uid:
            raise Forbidden("the UID of an event cannot change")
        if row.ical == obj.text:
            return PutResult(_blocked_item(row), False, exact=True)
        row.version += 1
        row.etag = repo.new_etag(obj.uid, row.version)
        row.last_source = actor.source
        kind = "blocked_time.updated"
        s.execute(delete(BusyInterval).where(BusyInterval.blocked_time_id == row.id))
    row.summary = obj.summary
    row.ical = obj.text
    row.recurring = obj.recurring
    row.first_occurrence, row.last_occurrence = obj.first, obj.last
    row.indexed_from, row.indexed_until = obj.indexed_from, obj.indexed_until
    row.updated_at = now
    s.flush()
    s.add_all(BusyInterval(blocked_time_id=row.id, staff_id=scope.staff_id,
                           start_at=start, end_at=end) for start, end in _pieces(obj.intervals))
    repo.log_change(s, scope.company_id, kind, "blocked_time", row.id, actor, summary,
                    staff_id=scope.staff_id)
    return PutResult(_blocked_item(row), existing is None, exact=True)


def _pieces(intervals: Iterable[mapping.Interval]) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Each interval cut into pieces of at most CHUNK (zero-length ones kept)."""
    for i in intervals:
        start = i.start
        while i.end - start > CHUNK:
            yield start, start + CHUNK
            start += CHUNK
        yield start, i.end


def delete_item(s: Session, scope: Scope, actor: repo.Actor, href: str) -> None:
    """DELETE: blocked time goes; an appointment is cancelled (or refused)."""
    if not scope.writable:
        raise Forbidden("group calendars are read-only")
    item = items_by_href(s, scope, [href], for_update=True).get(href)
    if item is None:
        raise NotFound(f"no item {href}")
    if item.kind == "blocked_time":
        row = s.get(BlockedTime, item.id)
        assert row is not None
        repo.log_change(s, scope.company_id, "blocked_time.deleted", "blocked_time", row.id,
                        actor, {"uid": row.uid, "href": row.href, "summary": row.summary},
                        staff_id=scope.staff_id)
        s.delete(row)
        return
    company = s.get(Company, scope.company_id)
    assert company is not None
    if _refuse_cancel(company):
        raise Forbidden(
            "appointments cannot be deleted from the calendar here: ask the booking system "
            "to cancel it (company setting caldav_delete = refuse)")
    appt = repo.get_appointment(s, scope.company_id, item.id)
    if appt.status != "cancelled":
        repo.update_appointment(s, scope.company_id, appt.id, {"status": "cancelled"}, actor,
                                if_match=item.etag)
    else:
        repo.log_change(s, scope.company_id, "appointment.removed_from_calendar", "appointment",
                        appt.id, actor, {"uid": appt.uid}, staff_id=appt.staff_id)
    appt.dav_hidden = True
    s.flush()

