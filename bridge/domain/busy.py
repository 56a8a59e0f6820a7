"""Busy time and free slots: pure interval arithmetic over iCalendar data.

What belongs here: expanding external calendars (ICS text) into UTC busy
intervals inside a window, with a cap (RFC 5545 §3.8.5 RRULE/RDATE/EXDATE,
§3.8.4.4 RECURRENCE-ID, §3.8.2.7 TRANSP, §3.8.1.11 STATUS), merging
intervals, working hours, and cutting free slots of a duration. What does
not: fetching (bridge.sync), SQL (bridge.availability). Floating times and
all-day dates are read in the staff member's own zone: an all-day event in
their private calendar blocks their local day.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from bridge.errors import Invalid, InvalidCalendarData

Interval = tuple[dt.datetime, dt.datetime]
# Events calbridge itself wrote to an external calendar carry this property;
# reading them back as busy time would count an appointment twice (and keep
# its old time busy after a reschedule until the next poll).
OWN_MARKER = "X-CALBRIDGE-APPOINTMENT"


@dataclass(frozen=True)
class ExpandOptions:
    timezone: str = "UTC"
    ignore_transparent: bool = True
    ignore_cancelled: bool = True
    ignore_tentative: bool = False
    max_occurrences: int = 20_000


@dataclass(frozen=True)
class Expansion:
    intervals: list[Interval]
    truncated: bool  # the cap was reached: later occurrences are missing
    events: int  # VEVENTs read (masters and overrides)
    skipped: int = 0  # events that could not be read


def parse_calendars(text: str | bytes) -> list[icalendar.Calendar]:
    """One or more VCALENDARs from text, or InvalidCalendarData."""
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig", errors="replace")
    if "BEGIN:VCALENDAR" not in text.upper():
        raise InvalidCalendarData("not iCalendar data (no BEGIN:VCALENDAR)")
    try:
        cals = icalendar.Calendar.from_ical(text, multiple=True)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidCalendarData(f"cannot parse the calendar: {exc}") from None
    if not cals:
        raise InvalidCalendarData("no VCALENDAR in the data")
    return list(cals)


def _to_utc(value: dt.date | dt.datetime, tz: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return value.astimezone(dt.UTC)
    return dt.datetime.combine(value, dt.time(), tz).astimezone(dt.UTC)


def _event_end(event: icalendar.Event, start: dt.date | dt.datetime) -> dt.date | dt.datetime:
    if "DTEND" in event:
        end: dt.date | dt.datetime = event.decoded("DTEND")
        return end
    if "DURATION" in event:
        duration = event.decoded("DURATION")
        if isinstance(duration, dt.timedelta):
            return start + duration
    if isinstance(start, dt.datetime):
        return start  # RFC 5545 §3.6.1: ends when it starts
    return start + dt.timedelta(days=1)


def expand(calendars: Sequence[icalendar.Calendar], start: dt.datetime, end: dt.datetime,
           options: ExpandOptions) -> Expansion:
    """Busy intervals (UTC, unmerged) of every VEVENT occurrence overlapping
    [start, end), at most `max_occurrences` of them: each series is expanded
    lazily, so an endless rule costs only what the cap allows.
    A calendar that cannot be expanded whole is expanded event by event
    (grouped by UID); events that still fail are skipped and counted: one
    broken event in a real-world feed must not hide the others."""
    tz = ZoneInfo(options.timezone)
    out: list[Interval] = []
    events = skipped = 0
    budget = options.max_occurrences + 1  # one more than the cap tells "truncated"
    for cal in calendars:
        events += sum(1 for _ in cal.walk("VEVENT"))
        try:
            parts = [list(_occurrences(cal, start, end, tz, budget))]
        except _EXPAND_ERRORS:
            parts = []
            for part in _split_by_uid(cal):
                try:
                    parts.append(list(_occurrences(part, start, end, tz, budget)))
                except _EXPAND_ERRORS:
                    skipped += 1
        for occurrences in parts:
            for event, a, b in occurrences:
                if _skip(event, options) or b <= a or b <= start:
                    continue
                if len(out) >= options.max_occurrences:
                    return Expansion(out, True, events, skipped)
                out.append((max(a, start), min(b, end)))
            if len(occurrences) >= budget:  # occurrences beyond the cap exist
                return Expansion(out, True, events, skipped)
    return Expansion(out, False, events, skipped)


def _occurrences(cal: icalendar.Calendar, start: dt.datetime, end: dt.datetime, tz: ZoneInfo,
                 budget: int) -> Iterator[tuple[icalendar.Event, dt.datetime, dt.datetime]]:
    """(event, UTC start, UTC end) of each occurrence in the window, series
    by series (each a lazy generator), at most `budget` of them in all."""
    query = recurring_ical_events.of(cal, skip_bad_series=True)
    suppressed = tuple(query.suppressed_errors)
    n = 0
    for series in query.series:
        try:
            for occurrence in series.between(start, end):
                if n >= budget:
                    return
                n += 1
                event = occurrence.as_component(False)
                first = event.decoded("DTSTART")
                yield event, _to_utc(first, tz), _to_utc(_event_end(event, first), tz)
        except suppressed:
            continue  # a bad series is skipped, as recurring_ical_events does


_EXPAND_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def _split_by_uid(cal: icalendar.Calendar) -> list[icalendar.Calendar]:
    zones = [c for c in cal.subcomponents if c.name == "VTIMEZONE"]
    groups: dict[str, list[icalendar.Component]] = {}
    for i, comp in enumerate(c for c in cal.subcomponents if c.name == "VEVENT"):
        groups.setdefault(str(comp.get("UID", f"#no-uid-{i}")), []).append(comp)
    parts = []
    for comps in groups.values():
        part = icalendar.Calendar()
        for c in [*zones, *comps]:
            part.add_component(c)
        parts.append(part)
    return parts


def _skip(event: icalendar.Event, options: ExpandOptions) -> bool:
    if OWN_MARKER in event:
        return True
    transp = str(event.get("TRANSP", "OPAQUE")).upper()
    if options.ignore_transparent and transp == "TRANSPARENT":
        return True
    status = str(event.get("STATUS", "")).upper()
    if options.ignore_cancelled and status == "CANCELLED":
        return True
    return options.ignore_tentative and status == "TENTATIVE"


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of intervals, sorted, touching ones joined."""
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def subtract(windows: Sequence[Interval], busy: Sequence[Interval]) -> list[Interval]:
    """`windows` minus `busy` (both merged and sorted)."""
    out: list[Interval] = []
    i = 0
    for a, b in windows:
        cur = a
        while i < len(busy) and busy[i][1] <= cur:
            i += 1
        j = i
        while j < len(busy) and busy[j][0] < b:
            if busy[j][0] > cur:
                out.append((cur, busy[j][0]))
            cur = max(cur, busy[j][1])
            j += 1
        if cur < b:
            out.append((cur, b))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


# --- working hours ------------------------------------------------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_WORKING_HOURS = "mon-fri 09:00-17:00"
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
WorkingHours = dict[int, list[tuple[dt.time, dt.time | None]]]  # None end: midnight


def parse_working_hours(spec: str, field: str = "working_hours") -> WorkingHours:
    """`mon-fri 09:00-17:00, sat 10:00-13:00`, `always`, or `09:00-17:00`
    (every day). Several ranges per day: `mon 09:00-12:00 13:00-17:00`."""
    spec = spec.strip().lower()
    hours: WorkingHours = {d: [] for d in range(7)}
    if spec in ("always", "24/7"):
        return {d: [(dt.time(0), None)] for d in range(7)}
    if not spec or len(spec) > 500:
        raise Invalid("working_hours must be like 'mon-fri 09:00-17:00, sat 10:00-13:00'",
                      field=field)
    for part in spec.split(","):
        tokens = part.split()
        if not tokens:
            raise Invalid("working_hours has an empty part", field=field)
        days = list(range(7))
        if not _RANGE.match(tokens[0]):
            days = _days(tokens[0], field)
            tokens = tokens[1:]
        if not tokens:
            raise Invalid(f"working_hours: no time range in {part.strip()!r}", field=field)
        for token in tokens:
            m = _RANGE.match(token)
            if not m:
                raise Invalid(f"working_hours: {token!r} is not a range like 09:00-17:00",
                              field=field)
            h1, m1, h2, m2 = (int(x) for x in m.groups())
            if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
                raise Invalid(f"working_hours: {token!r} is not a valid time", field=field)
            begin = dt.time(h1, m1)
            finish = None if h2 == 24 else dt.time(h2, m2)
            if finish is not None and finish <= begin:
                raise Invalid(f"working_hours: {token!r} ends before it starts", field=field)
            for d in days:
                hours[d].append((begin, finish))
    return hours


def _days(token: str, field: str) -> list[int]:
    out: list[int] = []
    for piece in token.split("+"):
        first, _, last = piece.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise Invalid(f"working_hours: {piece!r} is not a day or range like mon-fri",
                          field=field)
        a, b = DAYS.index(first), DAYS.index(last or first)
        out += list(range(a, b + 1)) if a <= b else list(range(a, 7)) + list(range(0, b + 1))
    return out


def working_windows(hours: WorkingHours, timezone: str, start: dt.datetime,
                    end: dt.datetime) -> list[Interval]:
    """Working time inside [start, end) as UTC intervals, day by day in the
    local zone (so 09:00 stays 09:00 across a DST change)."""
    tz = ZoneInfo(timezone)
    day = start.astimezone(tz).date() - dt.timedelta(days=1)
    last_day = end.astimezone(tz).date()
    out: list[Interval] = []
    while day <= last_day:
        for begin, finish in hours[day.weekday()]:
            a = dt.datetime.combine(day, begin, tz).astimezone(dt.UTC)
            b = (dt.datetime.combine(day, finish, tz) if finish is not None else
                 dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)).astimezone(dt.UTC)
            a, b = max(a, start), min(b, end)
            if a < b:
                out.append((a, b))
        day += dt.timedelta(days=1)
    return merge(out)


def slots(free: Sequence[Interval], anchor: dt.datetime, duration: dt.timedelta,
          granularity: dt.timedelta, limit: int) -> Iterator[dt.datetime]:
    """Start times `anchor + k·granularity` of every slot of `duration` that
    fits in a free interval; at most `limit` of them."""
    n = 0
    for a, b in free:
        k = -((anchor - a) // granularity)  # ceil((a - anchor) / granularity)
        t = anchor + k * granularity
        while t + duration <= b:
            if n >= limit:
                return
            yield t
            n += 1
            t += granularity
