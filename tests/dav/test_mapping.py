"""The pure CalDAV mapping (`bridge.domain.caldav`): properties and real-world samples."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.domain.caldav import appointment_edit, parse_object, render_appointment
from bridge.errors import BridgeError
from tests.conftest import SAMPLES

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


@dataclass
class Appt:
    uid: str = "a1@calbridge"
    all_day: bool = False
    start_at: dt.datetime | None = dt.datetime(2026, 5, 4, 7, 30, tzinfo=dt.UTC)
    end_at: dt.datetime | None = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    timezone: str = "Europe/Paris"
    status: str = "confirmed"
    service_name: str = "Haircut"
    customer_name: str = "Carla Díaz"
    customer_email: str = "carla@example.com"
    customer_phone: str = "+33 1 23 45 67 89"
    location: str = "Rue de Rivoli 1, Paris"
    meeting_url: str = ""
    notes: str = ""
    sequence: int = 0
    created_at: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    updated_at: dt.datetime = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
zones = st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC",
                         "Pacific/Chatham"])


@settings(max_examples=60, deadline=None)
@given(start=st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2037, 12, 31)),
       minutes=st.integers(1, 24 * 60 * 3), zone=zones, notes=texts, name=texts,
       all_day=st.booleans(), status=st.sampled_from(["confirmed", "tentative", "cancelled"]))
def test_rendered_appointment_reads_back_as_no_edit(
        start: dt.datetime, minutes: int, zone: str, notes: str, name: str, all_day: bool,
        status: str) -> None:
    """What the server serves, PUT back unchanged, changes nothing and refuses nothing."""
    s = start.replace(tzinfo=dt.UTC, second=0, microsecond=0)
    appt = Appt(timezone=zone, notes=notes.strip(), customer_name=name.strip(), status=status,
                start_at=s, end_at=s + dt.timedelta(minutes=minutes))
    if all_day:
        appt = replace(appt, all_day=True, start_at=None, end_at=None, start_date=s.date(),
                       end_date=s.date() + dt.timedelta(days=1 + minutes // 1440))
    text = render_appointment(appt, None)
    obj = parse_object(text, max_occurrences=100, now=NOW)
    assert obj.uid == appt.uid and not obj.recurring
    edit = appointment_edit(appt, obj)
    assert edit.payload == {} and edit.refused == []


def test_move_and_forbidden_changes_are_told_apart() -> None:
    appt = Appt()
    text = render_appointment(appt, None)
    moved = text.replace("DTSTART;TZID=Europe/Paris:20260504T093000",
                         "DTSTART;TZID=Europe/Paris:20260504T110000").replace(
        "DTEND;TZID=Europe/Paris:20260504T103000", "DTEND;TZID=Europe/Paris:20260504T120000")
    edit = appointment_edit(appt, parse_object(moved, max_occurrences=100, now=NOW))
    assert edit.payload["start"] == "2026-05-04T09:00:00+00:00" and edit.refused == []
    renamed = text.replace("X-CALBRIDGE-SERVICE:Haircut", "X-CALBRIDGE-SERVICE:Colour")
    edit = appointment_edit(appt, parse_object(renamed, max_occurrences=100, now=NOW))
    assert edit.payload == {} and edit.refused == ["service_name"]


def test_client_data_kept_by_render() -> None:
    client = render_appointment(Appt(), None).replace(
        "END:VEVENT", "X-MOZ-LASTACK:20260101T000000Z\r\nCATEGORIES:VIP,Work\r\n"
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nDESCRIPTION:x\r\nEND:VALARM\r\n"
        "END:VEVENT")
    again = render_appointment(Appt(notes="changed"), client)
    assert "X-MOZ-LASTACK:20260101T000000Z" in again and "CATEGORIES:VIP,Work" in again
    assert "TRIGGER:-PT5M" in again and "DESCRIPTION:changed" in again


@pytest.mark.parametrize("sample", sorted(p.name for p in (SAMPLES / "real-world").glob("*.ics")))
def test_real_world_samples_parse_or_are_refused_clearly(sample: str) -> None:
    """A real producer's calendar as one CalDAV object: single-UID event files
    are accepted and indexed; multi-UID feeds (a whole calendar) or ones
    with VTODO/VJOURNAL are refused with a message (RFC 4791 §4.1)."""
    text = (SAMPLES / "real-world" / sample).read_bytes().decode("utf-8-sig", "replace")
    try:
        obj = parse_object(text, max_occurrences=5000, now=NOW)
    except BridgeError as exc:
        assert exc.message
        return
    assert obj.uid and obj.first <= obj.last
    assert all(i.start <= i.end for i in obj.intervals)


def _objects_of(text: str) -> list[str]:
    """Split a producer's calendar into per-UID objects a client would PUT."""
    import icalendar

    cal = icalendar.Calendar.from_ical(text)
    zones = [c for c in cal.subcomponents if c.name == "VTIMEZONE"]
    by_uid: dict[str, list[icalendar.Component]] = {}
    for comp in cal.subcomponents:
        if comp.name == "VEVENT":
            by_uid.setdefault(str(comp.get("UID", "")), []).append(comp)
    out = []
    for comps in by_uid.values():
        obj = icalendar.Calendar()
        obj.add("PRODID", "-//split//EN")
        obj.add("VERSION", "2.0")
        for c in [*zones, *comps]:
            obj.add_component(c)
        out.append(obj.to_ical().decode())
    return out


def test_events_of_real_producers_are_accepted_one_by_one() -> None:
    """Each VEVENT group of Google/Office 365/Apple/Thunderbird exports, PUT as
    its own object (as a client importing them would), is accepted, or refused
    with a message (no crash)."""
    accepted, refused = 0, []
    for path in sorted((SAMPLES / "real-world").glob("*.ics")):
        try:
            pieces = _objects_of(path.read_bytes().decode("utf-8-sig", "replace"))
        except ValueError:
            continue
        for piece in pieces:
            try:
                parse_object(piece, max_occurrences=5000, now=NOW)
                accepted += 1
            except BridgeError as exc:
                refused.append((path.name, exc.message))
    assert accepted >= 40, refused
    assert all(message for _, message in refused)


@settings(max_examples=40, deadline=None)
@given(freq=st.sampled_from(["DAILY", "WEEKLY;BYDAY=MO,WE,FR", "DAILY;BYHOUR=9,17"]),
       interval=st.integers(1, 3), excluded=st.integers(0, 60), floating=st.booleans(),
       cap=st.integers(40, 450))
def test_recurrence_cap_counts_what_the_expansion_gives(
    freq: str, interval: int, excluded: int, floating: bool, cap: int
) -> None:
    """An event whose occurrences in the indexed window exceed the cap is
    refused, one within it is indexed in full: EXDATEs count (a rule just
    over the cap is fine once some dates are excluded), whether the times
    are UTC or floating."""
    import itertools

    import icalendar
    import recurring_ical_events
    from dateutil.rrule import rrulestr

    from bridge.errors import InvalidCalendarData

    z = "" if floating else "Z"
    first = dt.datetime(2026, 12, 1, 9, 0)
    rule = f"FREQ={freq};INTERVAL={interval}"
    dates = list(itertools.islice(rrulestr(rule, dtstart=first), excluded))
    exdate = ("EXDATE:" + ",".join(d.strftime("%Y%m%dT%H%M%S") + z for d in dates) + "\r\n"
              if dates else "")
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:r\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261201T090000{z}\r\n"
            f"DTEND:20261201T093000{z}\r\nRRULE:{rule}\r\n{exdate}SUMMARY:Class\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")
    start = first - dt.timedelta(days=2)  # the indexed window: as bridge.domain.caldav._expand
    window = (start, max(start, NOW.replace(tzinfo=None)) + dt.timedelta(days=400))
    if not floating:
        window = (window[0].replace(tzinfo=dt.UTC), window[1].replace(tzinfo=dt.UTC))
    expected = recurring_ical_events.of(icalendar.Calendar.from_ical(text)).between(*window)
    try:
        obj = parse_object(text, max_occurrences=cap, now=NOW)
    except InvalidCalendarData as exc:
        assert len(expected) > cap, exc.message
        assert "more than" in exc.message
    else:
        assert len(expected) <= cap
        assert len(obj.intervals) == len(expected)
        starts = [o["DTSTART"].dt for o in expected]
        assert sorted(i.start for i in obj.intervals) == sorted(
            s.replace(tzinfo=dt.UTC) if s.tzinfo is None else s for s in starts)
