"""iCalendar text for subscription feeds: VEVENTs, VTIMEZONEs, whole feeds.

Pure (stdlib and icalendar only). What belongs here: turning an appointment
or a blocked time into the VEVENT text of one privacy level, generating a
VTIMEZONE for any IANA zone, and assembling a feed from cached VEVENT texts.
What does not: choosing which rows go into a feed (`bridge.feeds.service`),
HTTP (`bridge.feeds.routes`).

Everything rendered here is deterministic: DTSTAMP and LAST-MODIFIED come
from the row's `updated_at`, never from the clock, so an unchanged feed is
byte-identical on every fetch.

RFC 5545 sections implemented:
- §3.1 content lines: CRLF, folding at 75 octets (never inside a UTF-8
  sequence), §3.3.11 TEXT escaping of backslash, semicolon, comma, newline;
- §3.3.5 DATE-TIME forms: UTC (`Z`) or local with TZID, never floating
  except all-day events (§3.3.4 `VALUE=DATE`, exclusive DTEND);
- §3.6.5 VTIMEZONE with STANDARD/DAYLIGHT observances described by
  yearly RRULEs (Outlook misreads RDATE-only zones);
- §3.8.7.4 SEQUENCE, §3.8.7.3 LAST-MODIFIED, §3.8.7.2 DTSTAMP, §3.8.4.7 UID;
- RFC 7986 §5.7 REFRESH-INTERVAL (with the de-facto X-PUBLISHED-TTL,
  X-WR-CALNAME and X-WR-TIMEZONE that Outlook and Apple read).
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.domain.appointments import AppointmentLike, summary_for

PRIVACY_LEVELS = ("full", "limited", "busy")
PRODID = "-//calbridge//calbridge feeds 1.0//EN"
CRLF = "\r\n"
BUSY = "Busy"
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal",
                       "Zulu", "Etc/Zulu", "GMT", "Etc/GMT", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0",
                       "GMT0", "GMT+0", "GMT-0", "Greenwich", "Etc/Greenwich"})
# The span VTIMEZONE observances are computed for. Fixed (not "today ±n")
# so a zone's text never changes with the date: feeds stay byte-identical.
TZ_FIRST_YEAR = 2000
TZ_LAST_YEAR = 2040

_ESCAPES = str.maketrans({"\\": "\\\\", ";": "\\;", ",": "\\,", "\n": "\\n"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# --- content lines (RFC 5545 §3.1, §3.3.11) ------------------------------------

def escape_text(value: str) -> str:
    """A TEXT value (§3.3.11): backslash, `;`, `,` and newlines escaped,
    control characters other than TAB dropped."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", value).translate(_ESCAPES)


def fold(line: str) -> str:
    """One content line folded at 75 octets (§3.1), CRLF-terminated.

    A continuation starts with a space, which counts toward its 75 octets;
    a break never falls inside a UTF-8 multi-byte character."""
    if len(line) <= 75 and line.isascii():
        return line + CRLF
    data = line.encode()
    if len(data) <= 75:
        return line + CRLF
    parts: list[bytes] = []
    start, limit = 0, 75
    while len(data) - start > limit:
        end = start + limit
        while data[end] & 0xC0 == 0x80:  # a continuation byte: back off to the lead byte
            end -= 1
        parts.append(data[start:end])
        start, limit = end, 74
    parts.append(data[start:])
    return (b"\r\n ".join(parts)).decode() + CRLF


def unfold(text: str) -> str:
    return text.replace("\r\n ", "").replace("\r\n\t", "")


def prop(name: str, value: str) -> str:
    return fold(f"{name}:{value}")


def text_prop(name: str, value: str) -> str:
    return fold(f"{name}:{escape_text(value)}")


def utc_stamp(value: dt.datetime) -> str:
    """A UTC DATE-TIME (§3.3.5 form #2)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime where a UTC time is needed")
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _local(value: dt.datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


def is_utc_zone(name: str) -> bool:
    return name in UTC_NAMES


def datetime_prop(name: str, value: dt.datetime, timezone: str) -> str:
    """DTSTART/DTEND of a timed event: local time with TZID (§3.3.5 form #3),
    or UTC for the UTC zones. Never floating."""
    if is_utc_zone(timezone):
        return f"{name}:{utc_stamp(value)}{CRLF}"
    local = value.astimezone(ZoneInfo(timezone))
    return fold(f"{name};TZID={timezone}:{_local(local)}")


def date_prop(name: str, value: dt.date) -> str:
    """An all-day DTSTART/DTEND (§3.3.4 `VALUE=DATE`)."""
    return f"{name};VALUE=DATE:{value.strftime('%Y%m%d')}{CRLF}"


# --- appointments --------------------------------------------------------------

def _description_full(appt: AppointmentLike) -> str:
    lines = []
    if appt.service_name:
        lines.append(f"Service: {appt.service_name}")
    if appt.customer_name:
        lines.append(f"Customer: {appt.customer_name}")
    if appt.customer_email:
        lines.append(f"Email: {appt.customer_email}")
    if appt.customer_phone:
        lines.append(f"Phone: {appt.customer_phone}")
    if appt.meeting_url:
        lines.append(f"Meeting link: {appt.meeting_url}")
    if appt.notes:
        lines.append("")
        lines.append(appt.notes)
    return "\n".join(lines)


def busy_uid(uid: str) -> str:
    """The UID of an item in a busy-only feed: stable, unique, and revealing
    nothing of the original (a client-chosen UID may hold an address)."""
    return f"busy-{hashlib.sha256(uid.encode()).hexdigest()[:32]}@calbridge"


def render_appointment(appt: AppointmentLike, privacy: str) -> str:
    """The VEVENT of one appointment at one privacy level (CRLF, folded).

    The SUMMARY line is always the last line before END:VEVENT, so group and
    company feeds can put the staff member's name in it (`with_staff_name`)
    without rendering again. `busy` shows only the time: SUMMARY "Busy", no
    DESCRIPTION, LOCATION, URL, ATTENDEE, ORGANIZER or X- property.
    """
    if privacy not in PRIVACY_LEVELS:
        raise ValueError(f"unknown privacy level {privacy!r}")
    out = ["BEGIN:VEVENT" + CRLF]
    uid = busy_uid(appt.uid) if privacy == "busy" else appt.uid
    out.append(text_prop("UID", uid))
    out.append(f"DTSTAMP:{utc_stamp(appt.updated_at)}{CRLF}")
    if appt.all_day:
        assert appt.start_date is not None and appt.end_date is not None
        out.append(date_prop("DTSTART", appt.start_date))
        out.append(date_prop("DTEND", appt.end_date))
    else:
        assert appt.start_at is not None and appt.end_at is not None
        out.append(datetime_prop("DTSTART", appt.start_at, appt.timezone))
        out.append(datetime_prop("DTEND", appt.end_at, appt.timezone))
    out.append(f"SEQUENCE:{appt.sequence}{CRLF}")
    if privacy != "busy":
        out.append(f"CREATED:{utc_stamp(appt.created_at)}{CRLF}")
    out.append(f"LAST-MODIFIED:{utc_stamp(appt.updated_at)}{CRLF}")
    out.append("STATUS:TENTATIVE" + CRLF if appt.status == "tentative" else "STATUS:CONFIRMED" + CRLF)
    out.append("TRANSP:OPAQUE" + CRLF)
    if privacy == "full":
        if appt.location:
            out.append(text_prop("LOCATION", appt.location))
        description = _description_full(appt)
        if description:
            out.append(text_prop("DESCRIPTION", description))
        if appt.meeting_url:
            out.append(prop("URL;VALUE=URI", appt.meeting_url.replace("\n", "")))
        out.append(text_prop("SUMMARY", summary_for(appt)))
    elif privacy == "limited":
        if appt.location:
            out.append(text_prop("LOCATION", appt.location))
        out.append(text_prop("SUMMARY", appt.service_name or "Appointment"))
    else:
        out.append("SUMMARY:" + BUSY + CRLF)
    out.append("END:VEVENT" + CRLF)
    return "".join(out)


def render_all_levels(appt: AppointmentLike) -> dict[str, str]:
    return {level: render_appointment(appt, level) for level in PRIVACY_LEVELS}


_SUMMARY_TAIL = CRLF + "SUMMARY:"


def with_staff_name(vevent: str, staff_name: str) -> str:
    """The same VEVENT with `staff_name: ` before its summary (group and
    company feeds). A `busy` VEVENT is returned unchanged."""
    if not staff_name:
        return vevent
    at = vevent.rfind(_SUMMARY_TAIL)
    if at < 0:
        return vevent
    head = vevent[: at + 2]
    line = unfold(vevent[at + 2 : -len("END:VEVENT" + CRLF) - 2])
    value = line[len("SUMMARY:"):]
    if value == BUSY:
        return vevent
    return head + fold(f"SUMMARY:{escape_text(staff_name)}: {value}") + "END:VEVENT" + CRLF


# --- blocked time ----------------------------------------------------------------

def _fmt_value(value: Any, timezone: str) -> tuple[str, str, set[str]]:
    """(parameters, value, TZIDs) of a DATE or DATE-TIME value for a feed.

    Floating times are read in `timezone`; zones that are not IANA names
    (Windows names, custom VTIMEZONEs) become UTC."""
    if isinstance(value, dt.datetime):
        tz = value.tzinfo
        if tz is None:
            value = value.replace(tzinfo=ZoneInfo(timezone))
            tz = value.tzinfo
        key = getattr(tz, "key", None)
        if key is None:
            from icalendar.timezone import tzid_from_dt

            try:
                name = tzid_from_dt(value)
            except Exception:  # any failure means "not an IANA zone"
                name = None
            if name and not is_utc_zone(name):
                try:
                    ZoneInfo(name)
                    key = name
                except (ZoneInfoNotFoundError, ValueError):
                    key = None
        if key is None or is_utc_zone(key):
            return "", utc_stamp(value), set()
        local = value.astimezone(ZoneInfo(key))
        return f";TZID={key}", _local(local), {key}
    if isinstance(value, dt.date):
        return ";VALUE=DATE", value.strftime("%Y%m%d"), set()
    raise ValueError(f"not a date or date-time: {value!r}")


def _ical_str(value: Any) -> str:
    raw = value.to_ical()
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True)
class Rendered:
    """VEVENT text and the TZIDs it references."""

    text: str
    tzids: frozenset[str]


def render_blocked_busy(
    ical_text: str, *, key: str, updated_at: dt.datetime, timezone: str
) -> Rendered:
    """Blocked time as "Busy" VEVENTs, keeping its recurrence (RRULE, RDATE,
    EXDATE, RECURRENCE-ID overrides) and nothing else of what the client wrote.

    `key` makes the UID (unique in a company feed, stable across edits);
    `timezone` is the staff member's zone, used for floating times.
    """
    from icalendar import Calendar

    cal = Calendar.from_ical(ical_text)
    uid = busy_uid(f"blocked:{key}")
    stamp = utc_stamp(updated_at)
    out: list[str] = []
    tzids: set[str] = set()
    for event in cal.walk("VEVENT"):
        if str(event.get("STATUS", "")).upper() == "CANCELLED":
            continue
        lines = ["BEGIN:VEVENT" + CRLF, f"UID:{uid}{CRLF}", f"DTSTAMP:{stamp}{CRLF}"]
        start = event.decoded("DTSTART")
        params, val, used = _fmt_value(start, timezone)
        tzids |= used
        lines.append(fold(f"DTSTART{params}:{val}"))
        if "DTEND" in event:
            params, val, used = _fmt_value(event.decoded("DTEND"), timezone)
            tzids |= used
            lines.append(fold(f"DTEND{params}:{val}"))
        elif "DURATION" in event:
            lines.append(prop("DURATION", _ical_str(event["DURATION"])))
        if "RECURRENCE-ID" in event:
            params, val, used = _fmt_value(event.decoded("RECURRENCE-ID"), timezone)
            tzids |= used
            lines.append(fold(f"RECURRENCE-ID{params}:{val}"))
        rrule = event.get("RRULE")
        if rrule is not None:
            rules = rrule if isinstance(rrule, list) else [rrule]
            for rule in rules[:1]:
                rule = rule.copy()
                until = rule.get("UNTIL")
                if until:
                    u = until[0]
                    if isinstance(u, dt.datetime) and isinstance(start, dt.datetime):
                        if u.tzinfo is None:
                            u = u.replace(tzinfo=start.tzinfo or ZoneInfo(timezone))
                        rule["UNTIL"] = [u.astimezone(dt.UTC)]
                    elif isinstance(u, dt.datetime) and not isinstance(start, dt.datetime):
                        rule["UNTIL"] = [u.date()]
                lines.append(prop("RRULE", _ical_str(rule)))
        for name in ("EXDATE", "RDATE"):
            values = event.get(name)
            if values is None:
                continue
            for group in values if isinstance(values, list) else [values]:
                for item in group.dts:
                    v = item.dt
                    if isinstance(v, tuple):  # RDATE;VALUE=PERIOD: keep the start
                        v = v[0]
                    params, val, used = _fmt_value(v, timezone)
                    tzids |= used
                    lines.append(fold(f"{name}{params}:{val}"))
        seq = event.get("SEQUENCE")
        lines.append(f"SEQUENCE:{int(seq) if seq is not None else 0}{CRLF}")
        lines.append("TRANSP:OPAQUE" + CRLF)
        lines.append("SUMMARY:" + BUSY + CRLF)
        lines.append("END:VEVENT" + CRLF)
        out.append("".join(lines))
    return Rendered("".join(out), frozenset(tzids))


_TZID_RE = re.compile(r";TZID=([^:;\r\n]+)")


def tzids_in(text: str) -> set[str]:
    """The TZIDs a rendered VEVENT text references."""
    return set(_TZID_RE.findall(unfold(text)))


# --- VTIMEZONE (RFC 5545 §3.6.5) ---------------------------------------------------

@dataclass(frozen=True)
class _Transition:
    at: dt.datetime  # UTC instant
    offset_from: dt.timedelta
    offset_to: dt.timedelta
    daylight: bool
    name: str


def _offset_at(tz: ZoneInfo, ts: int) -> tuple[dt.timedelta, dt.timedelta, str]:
    local = dt.datetime.fromtimestamp(ts, tz)
    off, dst = local.utcoffset(), local.dst()
    assert off is not None and dst is not None
    return off, dst, local.tzname() or ""


def _transitions(zone: str) -> list[_Transition]:
    tz = ZoneInfo(zone)
    start = int(dt.datetime(TZ_FIRST_YEAR, 1, 1, tzinfo=dt.UTC).timestamp())
    end = int(dt.datetime(TZ_LAST_YEAR + 1, 1, 1, tzinfo=dt.UTC).timestamp())
    day = 86_400
    found: list[_Transition] = []
    prev = _offset_at(tz, start)
    ts = start
    while ts < end:
        nxt = ts + day
        cur = _offset_at(tz, nxt)
        if cur[0] != prev[0]:
            lo, hi = ts, nxt  # offset(lo) == prev, offset(hi) == cur
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset_at(tz, mid)[0] == prev[0]:
                    lo = mid
                else:
                    hi = mid
            off, dst, name = _offset_at(tz, hi)
            daylight = dst > dt.timedelta(0) or (dst == dt.timedelta(0) and prev[1] < dt.timedelta(0))
            found.append(_Transition(dt.datetime.fromtimestamp(hi, dt.UTC), prev[0], off, daylight,
                                     name))
        prev = cur
        ts = nxt
    return found


def _offset(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{sign}{h:02d}{m:02d}" + (f"{s:02d}" if s else "")


_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def _weekday_rules(local: dt.datetime) -> set[int]:
    """Which `BYDAY=nXX` ordinals describe this day: its week of the month
    (1..4) and -1 when it is in the month's last seven days."""
    ordinals = set()
    nth = (local.day - 1) // 7 + 1
    if nth <= 4:
        ordinals.add(nth)
    if local.day > calendar.monthrange(local.year, local.month)[1] - 7:
        ordinals.add(-1)
    return ordinals


def _observance(kind: str, first: _Transition, rrule: str | None) -> str:
    local = first.at + first.offset_from
    lines = [
        f"BEGIN:{kind}{CRLF}",
        f"DTSTART:{_local(local.replace(tzinfo=None))}{CRLF}",
    ]
    if rrule:
        lines.append(f"RRULE:{rrule}{CRLF}")
    lines += [
        f"TZOFFSETFROM:{_offset(first.offset_from)}{CRLF}",
        f"TZOFFSETTO:{_offset(first.offset_to)}{CRLF}",
    ]
    if first.name:
        lines.append(text_prop("TZNAME", first.name))
    lines.append(f"END:{kind}{CRLF}")
    return "".join(lines)


@functools.lru_cache(maxsize=512)
def vtimezone(zone: str) -> str:
    """A VTIMEZONE for an IANA zone, valid from 2000 to 2040 and beyond.

    Transitions that recur every year on the same weekday rule become one
    observance with `RRULE:FREQ=YEARLY;BYMONTH=m;BYDAY=nXX` (with UNTIL when
    the rule stopped); irregular ones become single observances. A zone
    without transitions gets one STANDARD observance."""
    tz = ZoneInfo(zone)
    transitions = _transitions(zone)
    out = [f"BEGIN:VTIMEZONE{CRLF}", text_prop("TZID", zone)]
    if not transitions:
        off, _dst, name = _offset_at(
            tz, int(dt.datetime(TZ_FIRST_YEAR, 1, 1, tzinfo=dt.UTC).timestamp())
        )
        first = _Transition(dt.datetime(1970, 1, 1, tzinfo=dt.UTC) - off, off, off, False, name)
        out.append(_observance("STANDARD", first, None))
        out.append(f"END:VTIMEZONE{CRLF}")
        return "".join(out)
    # The offset before the first transition, as its own observance, so a
    # time before 2000's first change still has a defined offset.
    t0 = transitions[0]
    before = _offset_at(tz, int(t0.at.timestamp()) - 1)
    start = _Transition(dt.datetime(1970, 1, 1, tzinfo=dt.UTC) - before[0], before[0],
                        before[0], False, before[2])
    observances: list[tuple[dt.datetime, str]] = [
        (start.at, _observance("DAYLIGHT" if before[1] > dt.timedelta(0) else "STANDARD", start, None))
    ]
    # Group into runs: consecutive years, same kind/offsets/name/month/weekday/time.
    runs: list[list[tuple[_Transition, set[int]]]] = []
    open_runs: dict[tuple[Any, ...], list[tuple[_Transition, set[int]]]] = {}
    for t in transitions:
        local = t.at + t.offset_from
        key = (t.daylight, t.offset_from, t.offset_to, t.name, local.month, local.weekday(),
               local.time())
        ordinals = _weekday_rules(local)
        run = open_runs.get(key)
        if run is not None:
            last = run[-1][0]
            common = set.intersection(*(o for _, o in run), ordinals)
            if (last.at + last.offset_from).year + 1 == local.year and common:
                run.append((t, ordinals))
                continue
        run = [(t, ordinals)]
        runs.append(run)
        open_runs[key] = run
    last_year = TZ_LAST_YEAR
    for run in runs:
        first = run[0][0]
        kind = "DAYLIGHT" if first.daylight else "STANDARD"
        if len(run) == 1:
            observances.append((first.at, _observance(kind, first, None)))
            continue
        local = first.at + first.offset_from
        common = set.intersection(*(o for _, o in run))
        ordinal = -1 if -1 in common else min(common)
        rule = f"FREQ=YEARLY;BYMONTH={local.month};BYDAY={ordinal}{_DAYS[local.weekday()]}"
        end = run[-1][0]
        if (end.at + end.offset_from).year < last_year:
            rule += f";UNTIL={utc_stamp(end.at)}"
        observances.append((first.at, _observance(kind, first, rule)))
    observances.sort(key=lambda o: o[0])
    out.extend(text for _, text in observances)
    out.append(f"END:VTIMEZONE{CRLF}")
    return "".join(out)


# --- feeds ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FeedHeader:
    name: str
    timezone: str
    refresh_minutes: int = 15


def feed_head(header: FeedHeader) -> str:
    """The VCALENDAR properties (§3.7, RFC 7986 §5.7) before the components."""
    refresh = f"PT{header.refresh_minutes}M"
    return "".join((
        "BEGIN:VCALENDAR" + CRLF,
        "VERSION:2.0" + CRLF,
        f"PRODID:{PRODID}{CRLF}",
        "CALSCALE:GREGORIAN" + CRLF,
        "METHOD:PUBLISH" + CRLF,
        text_prop("X-WR-CALNAME", header.name),
        text_prop("NAME", header.name),
        text_prop("X-WR-TIMEZONE", header.timezone),
        f"REFRESH-INTERVAL;VALUE=DURATION:{refresh}{CRLF}",
        f"X-PUBLISHED-TTL:{refresh}{CRLF}",
    ))


FEED_TAIL = "END:VCALENDAR" + CRLF


def assemble_feed(header: FeedHeader, vevents: Sequence[str], tzids: Iterable[str]) -> str:
    """A whole feed: header, one VTIMEZONE per TZID used, the cached VEVENTs."""
    zones = sorted({z for z in tzids if not is_utc_zone(z)})
    return "".join((feed_head(header), *(vtimezone(z) for z in zones), *vevents, FEED_TAIL))
