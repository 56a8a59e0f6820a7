"""Rendering VEVENTs, VTIMEZONEs and feeds (pure, no database).

What a subscriber would notice: text that survives (commas, semicolons,
newlines, non-ASCII names), lines every client accepts (CRLF, 75 octets,
whole UTF-8 characters), no customer data below `full`, and time zones that
put every event at the same instant as Python's zoneinfo does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.domain import ical

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


@dataclass
class Appt:
    uid: str = "7d2c0a7e-1@calbridge"
    all_day: bool = False
    start_at: dt.datetime | None = dt.datetime(2026, 7, 1, 7, 30, tzinfo=dt.UTC)
    end_at: dt.datetime | None = dt.datetime(2026, 7, 1, 8, 15, tzinfo=dt.UTC)
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    timezone: str = "Europe/Paris"
    status: str = "confirmed"
    service_name: str = "Cut, colour; finish"
    customer_name: str = "Zoë Ångström"
    customer_email: str = "zoe@customer.example"
    customer_phone: str = "+33 6 12 34 56 78"
    location: str = "Room 3, 1st floor"
    meeting_url: str = "https://meet.example/zoe-secret"
    notes: str = "Allergic to latex\nBring referral; thanks"
    sequence: int = 2
    created_at: dt.datetime = T0
    updated_at: dt.datetime = T0 + dt.timedelta(days=1)


def parse_event(text: str) -> icalendar.Event:
    cal = icalendar.Calendar.from_ical(ical.assemble_feed(
        ical.FeedHeader("Test", "Europe/Paris"), [text], ["Europe/Paris"]))
    events = cal.walk("VEVENT")
    assert len(events) == 1
    return events[0]


def physical_lines(text: str) -> list[bytes]:
    data = text.encode()
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    return data[:-2].split(b"\r\n")


def test_full_level_keeps_everything_and_escapes_text() -> None:
    event = parse_event(ical.render_appointment(Appt(), "full"))
    assert str(event["SUMMARY"]) == "Cut, colour; finish – Zoë Ångström"
    assert str(event["LOCATION"]) == "Room 3, 1st floor"
    description = str(event["DESCRIPTION"])
    for part in ("zoe@customer.example", "+33 6 12 34 56 78", "https://meet.example/zoe-secret",
                 "Allergic to latex\nBring referral; thanks"):
        assert part in description
    assert event.decoded("DTSTART") == dt.datetime(2026, 7, 1, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert event["DTSTART"].params["TZID"] == "Europe/Paris"
    assert int(event["SEQUENCE"]) == 2
    assert event.decoded("DTSTAMP") == T0 + dt.timedelta(days=1)
    assert event.decoded("LAST-MODIFIED") == T0 + dt.timedelta(days=1)


def test_limited_level_has_service_and_location_but_no_customer_data() -> None:
    text = ical.render_appointment(Appt(), "limited")
    event = parse_event(text)
    assert str(event["SUMMARY"]) == "Cut, colour; finish"
    assert str(event["LOCATION"]) == "Room 3, 1st floor"
    for secret in ("Zoë", "zoe@", "+33", "latex", "meet.example"):
        assert secret not in text


def test_busy_level_shows_only_busy_time() -> None:
    appt = Appt(uid="anna.customer@gmail.com-booking")
    text = ical.render_appointment(appt, "busy")
    names = {line.split(b":")[0].split(b";")[0] for line in physical_lines(text)
             if not line.startswith(b" ")}
    assert names == {b"BEGIN", b"END", b"UID", b"DTSTAMP", b"DTSTART", b"DTEND", b"SEQUENCE",
                     b"LAST-MODIFIED", b"STATUS", b"TRANSP", b"SUMMARY"}
    assert "SUMMARY:Busy\r\n" in text
    for secret in ("Cut", "Room", "Zoë", "zoe@", "+33", "latex", "meet", "gmail"):
        assert secret not in text
    # Stable across edits, so clients update rather than duplicate.
    assert ical.render_appointment(replace(appt, sequence=5), "busy").split("\r\n")[1] == \
        text.split("\r\n")[1]


def test_rendering_is_deterministic() -> None:
    for level in ical.PRIVACY_LEVELS:
        assert ical.render_appointment(Appt(), level) == ical.render_appointment(Appt(), level)


def test_all_day_event_uses_dates_with_exclusive_end() -> None:
    appt = Appt(all_day=True, start_at=None, end_at=None, start_date=dt.date(2026, 5, 4),
                end_date=dt.date(2026, 5, 6))
    text = ical.render_appointment(appt, "full")
    assert "DTSTART;VALUE=DATE:20260504\r\n" in text
    assert "DTEND;VALUE=DATE:20260506\r\n" in text


def test_utc_appointments_are_utc_not_floating() -> None:
    text = ical.render_appointment(Appt(timezone="UTC"), "full")
    assert "DTSTART:20260701T073000Z\r\n" in text


def test_staff_name_goes_into_the_summary_of_team_feeds() -> None:
    full = ical.render_appointment(Appt(), "full")
    team = ical.with_staff_name(full, "Anna Müller")
    assert str(parse_event(team)["SUMMARY"]) == "Anna Müller: Cut, colour; finish – Zoë Ångström"
    assert ical.with_staff_name(ical.render_appointment(Appt(), "busy"), "Anna") == \
        ical.render_appointment(Appt(), "busy")


@given(st.text(min_size=0, max_size=300))
@settings(max_examples=200, deadline=None)
def test_any_text_folds_into_valid_lines_and_round_trips(value: str) -> None:
    line = ical.text_prop("DESCRIPTION", value)
    for physical in physical_lines(line):
        assert len(physical) <= 75
        physical.decode()  # never splits a UTF-8 character
    expected = value.replace("\r\n", "\n").replace("\r", "\n")
    expected = "".join(c for c in expected if c in "\t\n" or not (ord(c) < 32 or ord(c) == 127))
    parsed = icalendar.Event.from_ical(f"BEGIN:VEVENT\r\n{line}END:VEVENT\r\n")
    assert str(parsed.get("DESCRIPTION", "")) == expected


ZONES = ["Europe/Paris", "America/New_York", "Europe/London", "Europe/Dublin", "Asia/Tokyo",
         "Australia/Sydney", "Pacific/Auckland", "America/Sao_Paulo", "Asia/Kolkata",
         "America/Santiago", "Africa/Casablanca", "Australia/Lord_Howe", "Asia/Tehran",
         "Pacific/Chatham", "America/St_Johns", "Europe/Moscow", "UTC"]


@pytest.mark.parametrize("zone", ZONES)
def test_vtimezone_gives_the_same_offsets_as_zoneinfo(zone: str) -> None:
    text = ical.vtimezone(zone)
    assert "RDATE" not in text
    tz_component = icalendar.Calendar.from_ical(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + text + "END:VCALENDAR\r\n"
    ).walk("VTIMEZONE")[0]
    tzinfo = tz_component.to_tz()
    zi = ZoneInfo(zone)
    instant = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    while instant < dt.datetime(2028, 1, 1, tzinfo=dt.UTC):
        assert instant.astimezone(tzinfo).utcoffset() == instant.astimezone(zi).utcoffset(), instant
        instant += dt.timedelta(hours=53)


def test_vtimezone_uses_yearly_rules_for_regular_zones() -> None:
    text = ical.vtimezone("Europe/Paris")
    assert "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n" in text
    assert "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n" in text
    assert text.count("BEGIN:DAYLIGHT") == 1
    assert "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\n" in ical.vtimezone("America/New_York")


def test_feed_header_and_vtimezones() -> None:
    events = [ical.render_appointment(Appt(), "full"),
              ical.render_appointment(Appt(uid="b", timezone="America/New_York"), "full")]
    feed = ical.assemble_feed(ical.FeedHeader("Anna Müller", "Europe/Paris", 15), events,
                              ["Europe/Paris", "America/New_York", "UTC"])
    cal = icalendar.Calendar.from_ical(feed)
    assert str(cal["VERSION"]) == "2.0"
    assert str(cal["METHOD"]) == "PUBLISH"
    assert str(cal["X-WR-CALNAME"]) == "Anna Müller"
    assert str(cal["X-WR-TIMEZONE"]) == "Europe/Paris"
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT15M\r\n" in feed
    assert "X-PUBLISHED-TTL:PT15M\r\n" in feed
    assert sorted(str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")) == [
        "America/New_York", "Europe/Paris"]


BLOCKED = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Test//EN\r
BEGIN:VEVENT\r
UID:lunch-anna@client\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=Europe/Paris:20260105T120000\r
DTEND;TZID=Europe/Paris:20260105T130000\r
RRULE:FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20261231T230000Z\r
EXDATE;TZID=Europe/Paris:20260107T120000\r
SUMMARY:Lunch with my therapist\r
DESCRIPTION:private\r
LOCATION:Home\r
ATTENDEE:mailto:friend@example.com\r
BEGIN:VALARM\r
ACTION:DISPLAY\r
TRIGGER:-PT5M\r
DESCRIPTION:x\r
END:VALARM\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:lunch-anna@client\r
DTSTAMP:20260101T000000Z\r
RECURRENCE-ID;TZID=Europe/Paris:20260112T120000\r
DTSTART;TZID=Europe/Paris:20260112T140000\r
DTEND;TZID=Europe/Paris:20260112T150000\r
SUMMARY:Lunch moved\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_blocked_time_is_busy_and_keeps_its_recurrence() -> None:
    rendered = ical.render_blocked_busy(BLOCKED, key="17", updated_at=T0, timezone="Europe/Paris")
    text = rendered.text
    assert rendered.tzids == {"Europe/Paris"}
    for secret in ("therapist", "private", "Home", "friend@", "VALARM", "lunch-anna", "moved"):
        assert secret not in text
    assert text.count("SUMMARY:Busy\r\n") == 2
    assert "RRULE:FREQ=WEEKLY;UNTIL=20261231T230000Z;BYDAY=MO,WE\r\n" in text
    assert "EXDATE;TZID=Europe/Paris:20260107T120000\r\n" in text
    assert "RECURRENCE-ID;TZID=Europe/Paris:20260112T120000\r\n" in text
    assert ical.render_blocked_busy(BLOCKED, key="17", updated_at=T0,
                                    timezone="Europe/Paris").text == text


def test_blocked_time_in_a_windows_zone_becomes_iana() -> None:
    raw = BLOCKED.replace("TZID=Europe/Paris", "TZID=W. Europe Standard Time")
    rendered = ical.render_blocked_busy(raw, key="1", updated_at=T0, timezone="UTC")
    for line in rendered.text.split("\r\n"):
        if line.startswith("DTSTART"):
            assert line.endswith("Z") or ";TZID=" in line
            break
    assert ";TZID=W. Europe" not in rendered.text


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2030, 12, 31),
                       timezones=st.just(dt.UTC)).map(lambda d: d.replace(microsecond=0)),
    minutes=st.integers(min_value=5, max_value=600),
    service=texts, customer=texts, location=texts, notes=texts,
    level=st.sampled_from(ical.PRIVACY_LEVELS),
)
@settings(max_examples=150, deadline=None)
def test_rendered_events_parse_back_to_the_same_instant_and_uid(
    zone: str, start: dt.datetime, minutes: int, service: str, customer: str, location: str,
    notes: str, level: str,
) -> None:
    appt = Appt(start_at=start, end_at=start + dt.timedelta(minutes=minutes), timezone=zone,
                service_name=service, customer_name=customer, location=location, notes=notes)
    text = ical.render_appointment(appt, level)
    feed = ical.assemble_feed(ical.FeedHeader("x", zone), [text], [zone])
    event = icalendar.Calendar.from_ical(feed).walk("VEVENT")[0]
    assert event.decoded("DTSTART") == start
    assert event.decoded("DTEND") == start + dt.timedelta(minutes=minutes)
    assert str(event["UID"]) == (appt.uid if level != "busy" else ical.busy_uid(appt.uid))
    if level == "busy":
        assert str(event["SUMMARY"]) == "Busy"
