"""Availability: when is a staff member busy, and which slots are free.

Busy time merges three sources, all from the database (no network):
appointments (confirmed and tentative), blocked time the staff member put
in their calendar (the `busy_intervals` index, or the iCalendar text past
its indexed range), and the last good snapshot of their external calendars
(`external_busy`). `busy_intervals(s, staff_id, start, end)` is the one
entry point for a CalDAV free-busy-query (RFC 4791 §7.10) on a staff
calendar too.

Free slots are working hours (in the staff member's zone) minus busy time,
cut into slots of `duration` starting at `start + k·granularity`. "Any of"
a set offers a slot when at least one member is free, "all of" when every
member is. A staff member with a failing conflict-checking link is
`degraded`; with the company policy `stop_booking` they offer no slots.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.db import repo
from bridge.db.models import (
    Appointment,
    BlockedTime,
    BusyInterval,
    CalendarLink,
    Company,
    ExternalBusy,
    Staff,
)
from bridge.domain.busy import (
    ExpandOptions,
    Interval,
    WorkingHours,
    expand,
    merge,
    parse_calendars,
    slots,
    subtract,
    working_windows,
)
from bridge.errors import Invalid, InvalidCalendarData, NotFound
from bridge.sync.service import staff_degraded

BUSY_STATUSES = ("confirmed", "tentative")
MAX_WINDOW = dt.timedelta(days=62)
MAX_STAFF = 200
MAX_SLOTS = 5000


def _appointment_busy(s: Session, staff: dict[int, Staff], start: dt.datetime,
                      end: dt.datetime) -> dict[int, list[Interval]]:
    out: dict[int, list[Interval]] = {sid: [] for sid in staff}
    rows = s.execute(select(
        Appointment.staff_id, Appointment.all_day, Appointment.start_at, Appointment.end_at,
        Appointment.start_date, Appointment.end_date, Appointment.timezone,
    ).where(Appointment.staff_id.in_(list(staff)), Appointment.status.in_(BUSY_STATUSES),
            Appointment.first_occurrence < end, Appointment.last_occurrence > start))
    for sid, all_day, sa, ea, sd, ed, tzname in rows:
        if all_day:
            assert sd is not None and ed is not None
            tz = ZoneInfo(tzname)
            a = dt.datetime.combine(sd, dt.time(), tz).astimezone(dt.UTC)
            b = dt.datetime.combine(ed, dt.time(), tz).astimezone(dt.UTC)
        else:
            assert sa is not None and ea is not None
            a, b = sa, ea
        if a < end and b > start:
            out[sid].append((max(a, start), min(b, end)))
    return out


def _blocked_busy(s: Session, staff: dict[int, Staff], start: dt.datetime,
                  end: dt.datetime) -> dict[int, list[Interval]]:
    out: dict[int, list[Interval]] = {sid: [] for sid in staff}
    for sid, a, b in s.execute(select(
            BusyInterval.staff_id, BusyInterval.start_at, BusyInterval.end_at).where(
            BusyInterval.staff_id.in_(list(staff)), BusyInterval.start_at < end,
            BusyInterval.end_at > start)):
        out[sid].append((max(a, start), min(b, end)))
    # Recurring blocked time is indexed up to `indexed_until`; past it, expand the text.
    partial = s.execute(select(BlockedTime.staff_id, BlockedTime.ical,
                               BlockedTime.indexed_until).where(
        BlockedTime.staff_id.in_(list(staff)), BlockedTime.indexed_until.is_not(None),
        BlockedTime.indexed_until < end, BlockedTime.last_occurrence > start))
    for sid, text, until in partial:
        assert until is not None
        opts = ExpandOptions(timezone=staff[sid].timezone, max_occurrences=MAX_SLOTS)
        try:
            out[sid] += expand(parse_calendars(text), max(start, until), end, opts).intervals
        except InvalidCalendarData:
            continue  # stored text was accepted once; never fail a query on it
    return out


def _external_busy(s: Session, staff: dict[int, Staff], start: dt.datetime,
                   end: dt.datetime) -> dict[int, list[Interval]]:
    out: dict[int, list[Interval]] = {sid: [] for sid in staff}
    for sid, a, b in s.execute(
            select(ExternalBusy.staff_id, ExternalBusy.start_at, ExternalBusy.end_at)
            .join(CalendarLink, CalendarLink.id == ExternalBusy.link_id)
            .where(ExternalBusy.staff_id.in_(list(staff)), ExternalBusy.start_at < end,
                   ExternalBusy.end_at > start, CalendarLink.enabled.is_(True),
                   CalendarLink.check_conflicts.is_(True))):
        out[sid].append((max(a, start), min(b, end)))
    return out


def staff_busy(s: Session, staff: Sequence[Staff], start: dt.datetime, end: dt.datetime,
               *, external: bool = True) -> dict[int, list[Interval]]:
    """Merged busy time of each staff member: three queries for all of them."""
    by_id = {p.id: p for p in staff}
    if not by_id:
        return {}
    parts = [_appointment_busy(s, by_id, start, end), _blocked_busy(s, by_id, start, end)]
    if external:
        parts.append(_external_busy(s, by_id, start, end))
    return {sid: merge([i for part in parts for i in part[sid]]) for sid in by_id}


def busy_intervals(s: Session, staff_id: int, start: dt.datetime,
                   end: dt.datetime) -> list[Interval]:
    """Merged busy time (UTC) of one staff member in [start, end): for the
    CalDAV free-busy-query on their calendar and for availability."""
    staff = s.get(Staff, staff_id)
    if staff is None:
        return []
    return staff_busy(s, [staff], start, end)[staff.id]


def freebusy_vcalendar(s: Session, staff_id: int, start: dt.datetime, end: dt.datetime,
                       now: dt.datetime | None = None) -> str:
    """The answer to a CalDAV free-busy-query on a staff calendar (RFC 4791
    §7.10): one VFREEBUSY with the merged busy periods in UTC (RFC 5545
    §3.6.4, §3.8.2.6), from the same data as availability."""
    fmt = "%Y%m%dT%H%M%SZ"
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//calbridge//free-busy//EN",
             "BEGIN:VFREEBUSY", f"DTSTAMP:{stamp.strftime(fmt)}",
             f"DTSTART:{start.astimezone(dt.UTC).strftime(fmt)}",
             f"DTEND:{end.astimezone(dt.UTC).strftime(fmt)}"]
    lines += [f"FREEBUSY;FBTYPE=BUSY:{a.strftime(fmt)}/{b.strftime(fmt)}"
              for a, b in busy_intervals(s, staff_id, start, end)]
    lines += ["END:VFREEBUSY", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"


# --- the availability query -----------------------------------------------------------

@dataclass(frozen=True)
class Query:
    start: dt.datetime
    end: dt.datetime
    staff_ids: tuple[int, ...] = ()
    group_id: int | None = None
    duration: dt.timedelta = dt.timedelta(minutes=30)
    granularity: dt.timedelta = dt.timedelta(minutes=15)
    working_hours: WorkingHours | None = None
    include_busy: bool = True


def check_query(q: Query) -> None:
    if q.end <= q.start:
        raise Invalid("end must be after start", field="end")
    if q.end - q.start > MAX_WINDOW:
        raise Invalid("the window may span at most 62 days", field="end")
    if not q.staff_ids and q.group_id is None:
        raise Invalid("give staff=<ids> or group=<id>", field="staff")
    if q.duration <= dt.timedelta(0) or q.duration > dt.timedelta(days=1):
        raise Invalid("duration must be 1 to 1440 minutes", field="duration")
    if q.granularity <= dt.timedelta(0) or q.granularity > dt.timedelta(days=1):
        raise Invalid("granularity must be 1 to 1440 minutes", field="granularity")


@functools.lru_cache(maxsize=65_536)
def _iso(v: dt.datetime) -> str:
    """UTC ISO 8601 with Z (cached: slot times repeat across staff and queries)."""
    return v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _intervals_json(items: Sequence[Interval]) -> list[dict[str, str]]:
    return [{"start": _iso(a), "end": _iso(b)} for a, b in items]


def availability(s: Session, company_id: int, q: Query) -> dict[str, Any]:
    """The answer of GET /api/v1/availability (JSON-able)."""
    check_query(q)
    company = s.get(Company, company_id)
    assert company is not None
    ids = list(dict.fromkeys(q.staff_ids))
    if q.group_id is not None:
        ids += [m.id for m in repo.get_group(s, company_id, q.group_id).members
                if m.id not in ids]
    if len(ids) > MAX_STAFF:
        raise Invalid(f"at most {MAX_STAFF} staff members per query", field="staff")
    found = {p.id: p for p in s.execute(select(Staff).where(
        Staff.company_id == company_id, Staff.id.in_(ids))).scalars()} if ids else {}
    missing = [sid for sid in ids if sid not in found]
    if missing:
        raise NotFound(f"no staff member {missing[0]}", field="staff")
    staff = [found[sid] for sid in ids]
    degraded = staff_degraded(s, ids)
    stop = company.on_calendar_failure == "stop_booking"
    hours = q.working_hours
    people: list[dict[str, Any]] = []
    free_sets: dict[int, set[dt.datetime]] = {}
    all_slots: dict[dt.datetime, list[int]] = {}
    busy_of = staff_busy(s, staff, q.start, q.end)
    for person in staff:
        busy = busy_of[person.id]
        windows = (working_windows(hours, person.timezone, q.start, q.end) if hours is not None
                   else [(q.start, q.end)])
        free = subtract(windows, busy)
        bad = degraded[person.id]
        blocked = bool(bad) and stop
        starts = [] if blocked or not person.active else list(
            slots(free, q.start, q.duration, q.granularity, MAX_SLOTS))
        free_sets[person.id] = set(starts)
        for t in starts:
            all_slots.setdefault(t, []).append(person.id)
        entry: dict[str, Any] = {
            "staff_id": person.id, "timezone": person.timezone,
            "degraded": bool(bad), "failing_links": bad,
            "slots": [{"start": _iso(t), "end": _iso(t + q.duration)} for t in starts],
            "truncated": len(starts) >= MAX_SLOTS,
        }
        if blocked:
            entry["reason"] = ("a linked calendar cannot be read and the company policy is "
                               "stop_booking: no slots are offered")
        elif not person.active:
            entry["reason"] = "this staff member is inactive"
        if q.include_busy:
            entry["busy"] = _intervals_json(busy)
        people.append(entry)
    any_of = sorted(all_slots)
    all_of = sorted(set.intersection(*free_sets.values())) if free_sets else []
    return {
        "start": _iso(q.start), "end": _iso(q.end),
        "duration_minutes": int(q.duration.total_seconds() // 60),
        "granularity_minutes": int(q.granularity.total_seconds() // 60),
        "policy": {"on_calendar_failure": company.on_calendar_failure},
        "degraded": any(p["degraded"] for p in people),
        "staff": people,
        "any_of": [{"start": _iso(t), "end": _iso(t + q.duration), "staff_ids": all_slots[t]}
                   for t in any_of],
        "all_of": [{"start": _iso(t), "end": _iso(t + q.duration)} for t in all_of],
    }

