"""Busy-time expansion and interval arithmetic (pure): real-world feeds,
hostile input, the cap, and properties of merge/subtract/slots."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain.busy import (
    ExpandOptions,
    expand,
    intersect,
    merge,
    parse_calendars,
    slots,
    subtract,
)
from bridge.errors import InvalidCalendarData
from tests.conftest import SAMPLES

START = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2035, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("path", sorted((SAMPLES / "real-world").glob("*.ics")),
                         ids=lambda p: p.stem)
def test_real_world_feeds_expand_inside_the_window(path: object) -> None:
    from pathlib import Path

    assert isinstance(path, Path)
    result = expand(parse_calendars(path.read_bytes()), START, END,
                    ExpandOptions(timezone="Europe/Paris"))
    for a, b in result.intervals:
        assert START <= a < b <= END
        assert a.tzinfo is dt.UTC or a.utcoffset() == dt.timedelta(0)


def test_office_365_custom_zone_and_apple_feed_have_busy_time() -> None:
    office = expand(parse_calendars(
        (SAMPLES / "real-world" / "ical_office_356_custom_timezone.ics").read_bytes()),
        START, END, ExpandOptions())
    apple = expand(parse_calendars(
        (SAMPLES / "real-world" / "ical_apple_ical.ics").read_bytes()), START, END,
        ExpandOptions())
    assert len(office.intervals) > 10 and len(apple.intervals) > 1000


@pytest.mark.parametrize("path", sorted((SAMPLES / "invalid").glob("*.ics")),
                         ids=lambda p: p.stem)
def test_hostile_input_is_refused_cleanly_or_read_leniently(path: object) -> None:
    """Each file either raises InvalidCalendarData (the link's error says so
    and the snapshot stays) or is read leniently as icalendar does; nothing
    else escapes and nothing lands outside the window."""
    from pathlib import Path

    assert isinstance(path, Path)
    try:
        result = expand(parse_calendars(path.read_bytes()), START, END, ExpandOptions())
    except InvalidCalendarData as exc:
        assert exc.message
        return
    assert all(START <= a < b <= END for a, b in result.intervals)


def test_expansion_is_capped() -> None:
    cal = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:x\r\n"
           "DTSTAMP:20300101T000000Z\r\nDTSTART:20300101T000000Z\r\n"
           "DTEND:20300101T000030Z\r\nRRULE:FREQ=MINUTELY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    result = expand(parse_calendars(cal), dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                    dt.datetime(2030, 2, 1, tzinfo=dt.UTC), ExpandOptions(max_occurrences=100))
    assert result.truncated and len(result.intervals) == 100


def test_not_a_calendar() -> None:
    for text in ("<html></html>", "", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:2031\r\n"):
        with pytest.raises(InvalidCalendarData):
            expand(parse_calendars(text), START, END, ExpandOptions())


T0 = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
intervals = st.lists(st.tuples(st.integers(0, 500), st.integers(1, 60)).map(
    lambda t: (T0 + dt.timedelta(minutes=t[0]), T0 + dt.timedelta(minutes=t[0] + t[1]))),
    max_size=20)


def _minutes(items: list[tuple[dt.datetime, dt.datetime]]) -> set[int]:
    out: set[int] = set()
    for a, b in items:
        out |= set(range(int((a - T0).total_seconds() // 60), int((b - T0).total_seconds() // 60)))
    return out


@given(intervals, intervals)
def test_interval_algebra(a: list[tuple[dt.datetime, dt.datetime]],
                          b: list[tuple[dt.datetime, dt.datetime]]) -> None:
    ma, mb = merge(a), merge(b)
    assert _minutes(ma) == _minutes(a)
    assert all(x[1] < y[0] for x, y in itertools.pairwise(ma))
    assert _minutes(subtract(ma, mb)) == _minutes(a) - _minutes(b)
    assert _minutes(intersect(ma, mb)) == _minutes(a) & _minutes(b)


@given(intervals, st.integers(1, 90), st.integers(1, 60))
def test_slots_fit_in_free_time(free: list[tuple[dt.datetime, dt.datetime]], dur: int,
                                gran: int) -> None:
    merged = merge(free)
    d, g = dt.timedelta(minutes=dur), dt.timedelta(minutes=gran)
    starts = list(slots(merged, T0, d, g, 10_000))
    for t in starts:
        assert (t - T0) % g == dt.timedelta(0)
        assert any(a <= t and t + d <= b for a, b in merged)
    assert starts == sorted(set(starts))


def test_transparent_cancelled_and_tentative_follow_the_options() -> None:
    def ev(uid: str, hour: int, extra: str) -> str:
        return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20310101T000000Z\r\n"
                f"DTSTART:20310303T{hour:02d}0000Z\r\nDTEND:20310303T{hour:02d}3000Z\r\n"
                f"{extra}END:VEVENT\r\n")

    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
            + ev("a", 8, "") + ev("b", 9, "TRANSP:TRANSPARENT\r\n")
            + ev("c", 10, "STATUS:CANCELLED\r\n") + ev("d", 11, "STATUS:TENTATIVE\r\n")
            + ev("e", 12, "X-CALBRIDGE-APPOINTMENT:7\r\n") + "END:VCALENDAR\r\n")
    day = dt.datetime(2031, 3, 3, tzinfo=dt.UTC)

    def hours(**opts: bool) -> list[int]:
        result = expand(parse_calendars(text), day, day + dt.timedelta(days=1),
                        ExpandOptions(**opts))  # type: ignore[arg-type]
        return sorted(a.hour for a, _ in result.intervals)

    assert hours() == [8, 11]
    assert hours(ignore_tentative=True) == [8]
    assert hours(ignore_transparent=False, ignore_cancelled=False) == [8, 9, 10, 11]


@given(st.integers(0, 60), st.sampled_from(["DAILY", "WEEKLY", "HOURLY"]), st.integers(1, 3),
       st.integers(1, 50), st.integers(0, 40), st.integers(1, 30), st.integers(1, 200))
def test_recurrences_stay_in_the_window_and_under_the_cap(
        offset: int, freq: str, interval: int, count: int, win_from: int, win_days: int,
        cap: int) -> None:
    first = T0 + dt.timedelta(days=offset, hours=9)
    cal = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:r\r\n"
           f"DTSTAMP:20300101T000000Z\r\nDTSTART:{first:%Y%m%dT%H%M%SZ}\r\n"
           f"DURATION:PT45M\r\nRRULE:FREQ={freq};INTERVAL={interval};COUNT={count}\r\n"
           "END:VEVENT\r\nEND:VCALENDAR\r\n")
    lo = T0 + dt.timedelta(days=win_from)
    hi = lo + dt.timedelta(days=win_days)
    result = expand(parse_calendars(cal), lo, hi, ExpandOptions(max_occurrences=cap))
    step = {"DAILY": dt.timedelta(days=1), "WEEKLY": dt.timedelta(weeks=1),
            "HOURLY": dt.timedelta(hours=1)}[freq] * interval
    expected = [first + k * step for k in range(count)]
    expected = [t for t in expected if t < hi and t + dt.timedelta(minutes=45) > lo]
    assert all(lo <= a < b <= hi for a, b in result.intervals)
    assert len(result.intervals) == min(len(expected), cap)
    assert result.truncated == (len(expected) > cap)
