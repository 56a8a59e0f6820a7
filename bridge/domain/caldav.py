"""CalDAV mapping: a calendar object resource <-> appointment fields or blocked time.

Pure (stdlib, icalendar, recurring-ical-events): no SQL, no HTTP, no Radicale.
What belongs here:

- `parse_object`: check a PUT body against RFC 4791 §4.1 (one UID, no METHOD,
  events only) and RFC 5545 (end not before start, bounded recurrence) and
  derive what the database indexes (UTC span, busy intervals).
- `render_appointment`: the VCALENDAR a staff member's client sees for a
  booking: the booking's own columns win, and everything the booking has
  no column for (VALARM, X- properties, CATEGORIES, COLOR, ...) comes from
  the last text the client wrote, so it survives a round trip.
- `appointment_edit`: what a client's new text means for the booking: staff
  may move it, cancel it and write notes (DESCRIPTION); changes to what the
  customer booked (service, customer, place) are reported, not applied.

Errors are `InvalidCalendarData` / `Invalid` / `Forbidden` from
`bridge.errors`; the Radicale plugin boundary turns them into status codes.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import dateutil.rrule
import icalendar
import recurring_ical_events

from bridge.domain.appointments import ALL_DAY_SLACK, AppointmentLike, summary_for
from bridge.domain.ical import vtimezone
from bridge.errors import Forbidden, InvalidCalendarData

PRODID = "-//calbridge//CalDAV bridge//EN"
# The latest instant we store; "forever" for an unbounded recurrence.
FOREVER = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
# Recurrences are indexed this far past max(first occurrence, now).
INDEX_HORIZON = dt.timedelta(days=400)
# Properties of an appointment's VEVENT that the booking owns: a client's
# value for them is never kept (RFC 5545 §3.6.1 property names).
SERVER_OWNED = frozenset({
    "UID", "DTSTAMP", "CREATED", "LAST-MODIFIED", "SEQUENCE", "DTSTART", "DTEND",
    "DURATION", "SUMMARY", "DESCRIPTION", "LOCATION", "URL", "STATUS", "CONTACT",
    "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID", "ORGANIZER", "ATTENDEE",
    "X-CALBRIDGE-SERVICE", "X-CALBRIDGE-CUSTOMER-NAME", "X-CALBRIDGE-CUSTOMER-EMAIL",
    "X-CALBRIDGE-CUSTOMER-PHONE",
})
# X- properties carrying booking fields staff may read but not change.
BOOKING_PROPS = {
    "X-CALBRIDGE-SERVICE": "service_name",
    "X-CALBRIDGE-CUSTOMER-NAME": "customer_name",
    "X-CALBRIDGE-CUSTOMER-EMAIL": "customer_email",
    "X-CALBRIDGE-CUSTOMER-PHONE": "customer_phone",
}
_STATUS_OUT = {"confirmed": "CONFIRMED", "tentative": "TENTATIVE", "cancelled": "CANCELLED"}


@dataclass(frozen=True)
class Interval:
    """One occurrence in UTC (floating and DATE values read as UTC)."""

    start: dt.datetime
    end: dt.datetime


@dataclass
class CalendarObject:
    """A checked calendar object resource (one UID, VEVENTs only)."""

    uid: str
    text: str
    master: icalendar.Event
    overrides: list[icalendar.Event]
    recurring: bool
    all_day: bool
    summary: str
    first: dt.datetime
    last: dt.datetime
    intervals: list[Interval] = field(default_factory=list)
    # Intervals cover the occurrences from/until here; None: every one.
    indexed_from: dt.datetime | None = None
    indexed_until: dt.datetime | None = None


# --- parsing -------------------------------------------------------------------

def _to_utc(value: dt.date | dt.datetime) -> dt.datetime:
    """RFC 4791 §9.9: DATE and floating values are compared as UTC here."""
    if not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), dt.UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _decoded_time(ev: icalendar.Event, name: str) -> dt.date | dt.datetime:
    try:
        value = ev.decoded(name)
    except (ValueError, TypeError) as exc:
        raise InvalidCalendarData(f"{name} is not a date or date-time: {exc}",
                                  field=name) from None
    if not isinstance(value, dt.date):
        raise InvalidCalendarData(f"{name} is not a date or date-time", field=name)
    return value


def _event_bounds(ev: icalendar.Event) -> tuple[dt.date | dt.datetime, dt.date | dt.datetime]:
    """(start, end) of one VEVENT per RFC 5545 §3.6.1, checked."""
    if "DTSTART" not in ev:
        raise InvalidCalendarData("VEVENT without DTSTART", field="DTSTART")
    start = _decoded_time(ev, "DTSTART")
    end: dt.date | dt.datetime
    if "DTEND" in ev:
        if "DURATION" in ev:
            raise InvalidCalendarData("VEVENT has both DTEND and DURATION", field="DTEND")
        end = _decoded_time(ev, "DTEND")
        if isinstance(start, dt.datetime) != isinstance(end, dt.datetime):
            raise InvalidCalendarData("DTSTART and DTEND must both be dates or both date-times",
                                      field="DTEND")
    elif "DURATION" in ev:
        try:
            duration = ev.decoded("DURATION")
        except (ValueError, TypeError) as exc:
            raise InvalidCalendarData(f"DURATION is not a duration: {exc}",
                                      field="DURATION") from None
        if not isinstance(duration, dt.timedelta) or duration < dt.timedelta(0):
            raise InvalidCalendarData("DURATION must not be negative", field="DURATION")
        end = start + duration
    elif isinstance(start, dt.datetime):
        end = start
    else:
        end = start + dt.timedelta(days=1)
    if _to_utc(end) < _to_utc(start):
        raise InvalidCalendarData("the event ends before it starts", field="DTEND")
    return start, end


def parse_object(
    text: str, *, max_occurrences: int, now: dt.datetime, component: str = "VEVENT",
) -> CalendarObject:
    """Check one calendar object resource and index it.

    RFC 4791 §4.1: one VCALENDAR, no METHOD, components of one type sharing
    one UID (a master and RECURRENCE-ID overrides), plus VTIMEZONEs.
    A recurrence with more than `max_occurrences` occurrences before the
    indexing horizon is refused (an absurd RRULE), never expanded unbounded.
    """
    try:
        cal = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise InvalidCalendarData(f"not valid iCalendar: {exc}") from None
    if not isinstance(cal, icalendar.Calendar) or cal.name != "VCALENDAR":
        raise InvalidCalendarData("the body is not a VCALENDAR")
    if "METHOD" in cal:
        raise InvalidCalendarData(
            "a calendar object resource must not contain METHOD (RFC 4791 §4.1); "
            "send invitations with iTIP, not by storing them", field="METHOD")
    for comp in cal.walk():
        if comp.errors:
            name, message = comp.errors[0]
            raise InvalidCalendarData(f"{comp.name} {name}: {message}", field=name)
    events: list[icalendar.Event] = []
    for sub in cal.subcomponents:
        if sub.name == "VTIMEZONE":
            continue
        if sub.name != component:
            raise Forbidden(
                f"this calendar holds only {component} components, not {sub.name} "
                "(supported-calendar-component-set, RFC 4791 §5.2.3)", field="component")
        if isinstance(sub, icalendar.Event):
            events.append(sub)
    if not events:
        raise InvalidCalendarData(f"no {component} in the calendar object")
    uids = {str(ev.get("UID", "")) for ev in events}
    if "" in uids:
        raise InvalidCalendarData(f"a {component} without UID", field="UID")
    if len(uids) > 1:
        raise InvalidCalendarData(
            "one calendar object resource holds one UID (RFC 4791 §4.1), got "
            + ", ".join(sorted(uids)), field="UID")
    masters = [ev for ev in events if "RECURRENCE-ID" not in ev]
    overrides = [ev for ev in events if "RECURRENCE-ID" in ev]
    if len(masters) > 1:
        raise InvalidCalendarData(f"several {component}s with the same UID and no RECURRENCE-ID",
                                  field="UID")
    bounds = [_event_bounds(ev) for ev in events]
    master = masters[0] if masters else overrides[0]
    start, _ = _event_bounds(master)
    all_day = not isinstance(start, dt.datetime)
    recurring = any(p in master for p in ("RRULE", "RDATE")) or bool(overrides)
    obj = CalendarObject(
        uid=uids.pop(), text=text, master=master, overrides=overrides, recurring=recurring,
        all_day=all_day, summary=str(master.get("SUMMARY", ""))[:500],
        first=FOREVER, last=FOREVER,
    )
    if not recurring:
        s, e = bounds[0]
        obj.intervals = [Interval(_to_utc(s), _to_utc(e))]
    else:
        _expand(cal, obj, max_occurrences, now)
    if obj.intervals and obj.indexed_from is None:
        obj.first = min(i.start for i in obj.intervals)
    else:
        obj.first = min(_to_utc(s) for s, _ in bounds)
    if obj.intervals:
        if obj.indexed_until is None:
            obj.last = max(i.end for i in obj.intervals)
    elif obj.indexed_until is None and not recurring:
        obj.last = max(_to_utc(e) for _, e in bounds)
    if all_day or any(isinstance(s, dt.datetime) and s.tzinfo is None for s, _ in bounds):
        obj.first -= ALL_DAY_SLACK  # floating: the span must hold in any zone
        if obj.last != FOREVER:
            obj.last += ALL_DAY_SLACK
    return obj


def _expand(cal: icalendar.Calendar, obj: CalendarObject, cap: int, now: dt.datetime) -> None:
    starts = [_event_bounds(ev)[0] for ev in [obj.master, *obj.overrides]]
    first_start = min(_to_utc(s) for s in starts) - dt.timedelta(days=2)
    window_start = max(first_start, now - INDEX_HORIZON)
    horizon = max(window_start, now) + INDEX_HORIZON
    if window_start > first_start:
        obj.indexed_from = window_start
    rule = obj.master.get("RRULE")
    rules = rule if isinstance(rule, list) else [rule] if rule is not None else []
    if any("COUNT" in r and int(r["COUNT"][0]) > cap for r in rules):
        raise InvalidCalendarData(f"COUNT is above the limit of {cap} occurrences",
                                  field="RRULE")
    too_many = InvalidCalendarData(
        f"the recurrence has more than {cap} occurrences before "
        f"{horizon.date().isoformat()}; split it or use a coarser rule", field="RRULE")
    found: list[icalendar.Event] = []
    try:
        counted = _rule_occurrences(obj.master, window_start, horizon, cap)
        if counted is not None and counted > cap:
            raise too_many
        if counted is not None:  # bounded: expand the window in one query
            found = recurring_ical_events.of(cal).between(window_start, horizon)
        else:  # a rule dateutil alone cannot count: one occurrence at a time
            for occ in recurring_ical_events.of(cal).after(window_start):
                begins = occ.get("DTSTART")
                if begins is not None and _to_utc(begins.dt) >= horizon:
                    break
                found.append(occ)
                if len(found) > cap:
                    raise too_many
        if len(found) > cap:
            raise too_many
    except InvalidCalendarData:
        raise
    except Exception as exc:  # the library raises many types for a bad rule
        raise InvalidCalendarData(f"the RRULE/RDATE/EXDATE values cannot be expanded: {exc}",
                                  field="RRULE") from None
    for occ in found:
        s = occ.get("DTSTART").dt if occ.get("DTSTART") else None
        e = occ.get("DTEND").dt if occ.get("DTEND") else s
        if s is None or e is None:
            continue
        obj.intervals.append(Interval(_to_utc(s), _to_utc(e)))
    try:
        later = next(iter(recurring_ical_events.of(cal).after(horizon)), None)
    except Exception:  # expanding once worked: be conservative
        later = True
    if later is not None:
        obj.indexed_until = horizon


def _rule_occurrences(master: icalendar.Event, start: dt.datetime, end: dt.datetime,
                      cap: int) -> int | None:
    """How many occurrences the RRULEs give in [start, end), counted up to
    `cap` + the EXDATEs + 1 (enough to refuse), or None when dateutil alone
    cannot tell. Counting a rule costs microseconds an occurrence; expanding
    it with recurring_ical_events costs a component copy each, so an absurd
    rule (FREQ=SECONDLY) is refused before anything is expanded."""
    rule = master.get("RRULE")
    rules = rule if isinstance(rule, list) else [rule] if rule is not None else []
    excluded = master.get("EXDATE")
    exdates = sum(len(e.dts) for e in (excluded if isinstance(excluded, list) else
                                        [excluded] if excluded is not None else []))
    limit = cap + exdates + 1
    first, _ = _event_bounds(master)
    if not isinstance(first, dt.datetime):
        first = dt.datetime.combine(first, dt.time())
    if first.tzinfo is None:  # floating: compare in its own (unknown) zone
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    total = 0
    try:
        for r in rules:
            series = dateutil.rrule.rrulestr(r.to_ical().decode(), dtstart=first)
            for when in itertools.islice(series.xafter(start, inc=True), limit - total):
                if when >= end:
                    break
                total += 1
    except (ValueError, TypeError, OverflowError):
        return None
    return max(total - exdates, 0)  # at most this many are excluded


def busy_summary(obj: CalendarObject, limit: int = 50) -> dict[str, Any]:
    """Busy intervals for the change log: what the booking system must keep free."""
    items = [{"start": i.start.isoformat(), "end": i.end.isoformat()}
             for i in obj.intervals[:limit]]
    return {
        "uid": obj.uid,
        "summary": obj.summary,
        "all_day": obj.all_day,
        "recurring": obj.recurring,
        "busy": items,
        "busy_truncated": len(obj.intervals) > limit or obj.indexed_until is not None,
    }


# --- appointments ------------------------------------------------------------

def _contact(appt: AppointmentLike) -> str:
    parts = [appt.customer_name, appt.customer_email, appt.customer_phone]
    return ", ".join(p for p in parts if p)


def render_appointment(appt: AppointmentLike, client_text: str | None) -> str:
    """The VCALENDAR text of an appointment as its staff member's calendar shows it."""
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    ev = icalendar.Event()
    kept: list[tuple[str, Any]] = []
    alarms: list[icalendar.Component] = []
    if client_text:
        try:
            client = icalendar.Calendar.from_ical(client_text)
            master = next((c for c in client.walk("VEVENT") if "RECURRENCE-ID" not in c), None)
        except ValueError:
            master = None
        if master is not None:
            kept = [(k, v) for k, v in master.property_items(recursive=False)
                    if k not in SERVER_OWNED and k not in ("BEGIN", "END")]
            alarms = [c for c in master.subcomponents if c.name == "VALARM"]
    ev.add("UID", appt.uid)
    ev.add("DTSTAMP", appt.updated_at.astimezone(dt.UTC))
    ev.add("CREATED", appt.created_at.astimezone(dt.UTC))
    ev.add("LAST-MODIFIED", appt.updated_at.astimezone(dt.UTC))
    ev.add("SEQUENCE", appt.sequence)
    if appt.all_day:
        assert appt.start_date and appt.end_date
        ev.add("DTSTART", appt.start_date)
        ev.add("DTEND", appt.end_date)
    else:
        assert appt.start_at and appt.end_at
        tz = ZoneInfo(appt.timezone)
        if appt.timezone == "UTC":
            ev.add("DTSTART", appt.start_at.astimezone(dt.UTC))
            ev.add("DTEND", appt.end_at.astimezone(dt.UTC))
        else:
            ev.add("DTSTART", appt.start_at.astimezone(tz))
            ev.add("DTEND", appt.end_at.astimezone(tz))
    ev.add("SUMMARY", summary_for(appt))
    if appt.notes:
        ev.add("DESCRIPTION", appt.notes)
    if appt.location:
        ev.add("LOCATION", appt.location)
    if appt.meeting_url:
        ev.add("URL", appt.meeting_url)
    ev.add("STATUS", _STATUS_OUT.get(appt.status, "CONFIRMED"))
    contact = _contact(appt)
    if contact:
        ev.add("CONTACT", contact)
    for prop, column in BOOKING_PROPS.items():
        value = getattr(appt, column)
        if value:
            ev.add(prop, value)
    for name, value in kept:
        ev.add(name, value, encode=False)
    for alarm in alarms:
        ev.add_component(alarm)
    cal.add_component(ev)
    if not appt.all_day and appt.timezone != "UTC":
        cal.add_component(icalendar.Timezone.from_ical(vtimezone(appt.timezone)))
    return str(cal.to_ical().decode())


@dataclass(frozen=True)
class AppointmentEdit:
    """A client's edit as a booking update: `payload` for the unit of work
    (only fields staff may change) and the fields it tried to change but may not."""

    payload: dict[str, Any]
    refused: list[str]


def _text(ev: icalendar.Event, name: str) -> str:
    value = ev.get(name)
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0]
    return str(value).replace("\r\n", "\n")


def appointment_edit(appt: AppointmentLike, obj: CalendarObject) -> AppointmentEdit:
    """Map a client's VEVENT onto the booking (DESIGN rule 4)."""
    ev = obj.master
    payload: dict[str, Any] = {}
    refused: list[str] = []
    if obj.uid != appt.uid:
        raise InvalidCalendarData("the UID of an event cannot change", field="UID")
    if obj.recurring:
        refused.append("recurrence")
    start, end = _event_bounds(ev)
    if isinstance(start, dt.datetime):
        tz = ZoneInfo(appt.timezone)
        s = start if start.tzinfo else start.replace(tzinfo=tz)
        e = end if isinstance(end, dt.datetime) and end.tzinfo else (
            end.replace(tzinfo=tz) if isinstance(end, dt.datetime) else end)
        assert isinstance(e, dt.datetime)
        new_timing: tuple[Any, ...] = (False, s.astimezone(dt.UTC), e.astimezone(dt.UTC))
        current: tuple[Any, ...] = (appt.all_day, appt.start_at, appt.end_at)
        if new_timing != current:
            payload.update(all_day=False, start=s.astimezone(dt.UTC).isoformat(),
                           end=e.astimezone(dt.UTC).isoformat())
    else:
        if (True, start, end) != (appt.all_day, appt.start_date, appt.end_date):
            payload.update(all_day=True, start=start.isoformat(), end=end.isoformat())
    notes = _text(ev, "DESCRIPTION")
    if notes != appt.notes.replace("\r\n", "\n"):
        payload["notes"] = notes
    status = _text(ev, "STATUS").upper()
    if status == "CANCELLED" and appt.status != "cancelled":
        payload["status"] = "cancelled"
    elif status and status != _STATUS_OUT.get(appt.status):
        refused.append("status")
    if "SUMMARY" in ev and _text(ev, "SUMMARY") != summary_for(appt):
        refused.append("summary")
    for prop, column in BOOKING_PROPS.items():
        if prop in ev and _text(ev, prop) != getattr(appt, column):
            refused.append(column)
    if "CONTACT" in ev and _text(ev, "CONTACT") != _contact(appt):
        refused.append("customer")
    if _text(ev, "LOCATION") != appt.location and ("LOCATION" in ev or appt.location):
        refused.append("location")
    if "URL" in ev and _text(ev, "URL") != appt.meeting_url:
        refused.append("meeting_url")
    return AppointmentEdit(payload, refused)


def refusal_message(refused: Iterable[str]) -> str:
    return ("not applied (the booking system owns these): " + ", ".join(sorted(set(refused))))


def merge_meta(base: Mapping[str, str], overlay: Mapping[str, Any]) -> dict[str, str]:
    """Collection properties: the server's, then what a client set (PROPPATCH)."""
    merged = dict(base)
    for key, value in overlay.items():
        if key != "tag" and isinstance(value, str):
            merged[key] = value
    return merged
