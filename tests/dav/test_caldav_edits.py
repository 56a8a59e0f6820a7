"""What an edit in a calendar app means for the booking, through the `caldav` client.

Each test drives a live calbridge (SQLite and PostgreSQL) with the `caldav`
library as a staff member would with their app password, and checks what
the booking system sees: the appointment row and the change log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import caldav
import icalendar
import pytest
from sqlalchemy import select

from bridge.db.engine import Database
from bridge.db.models import Appointment, BlockedTime, ChangeEntry, Company
from tests.dav.conftest import LiveServer, StaffLogin, create_appointment, dav_client, raw

PARIS = "Europe/Paris"


def own_calendar(live: LiveServer, who: StaffLogin) -> caldav.Calendar:
    principal = dav_client(live, who).principal()
    (cal,) = [c for c in principal.calendars() if str(c.url).endswith("/calendar/")]
    return cal


def appointment(db: Database, appt_id: int) -> Appointment:
    with db.sync_session() as s:
        row = s.get(Appointment, appt_id)
        assert row is not None
        return row


def changes(db: Database, company_id: int, since: int = 0) -> list[ChangeEntry]:
    with db.sync_session() as s:
        return list(s.execute(select(ChangeEntry).where(
            ChangeEntry.company_id == company_id, ChangeEntry.seq > since)
            .order_by(ChangeEntry.seq)).scalars())


def last_seq(db: Database, company_id: int) -> int:
    with db.sync_session() as s:
        return int(s.execute(select(Company.change_seq).where(Company.id == company_id))
                   .scalar_one())


def the_event(cal: caldav.Calendar) -> caldav.Event:
    (event,) = cal.events()
    return event


def edit(event: caldav.Event, **props: Any) -> None:
    """Change properties of the event's VEVENT the way a client would."""
    ical = event.icalendar_instance
    vevent = next(c for c in ical.walk("VEVENT"))
    for name, value in props.items():
        name = name.upper().replace("_", "-")
        vevent.pop(name, None)
        if value is not None:
            vevent.add(name, value)
    event.data = ical.to_ical().decode()


def test_discovery_lists_own_calendar_with_appointment(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    create_appointment(db, anna.company_id, anna.staff_id)
    cal = own_calendar(live, anna)
    (event,) = cal.events()
    vevent = event.icalendar_component
    assert str(vevent["SUMMARY"]) == "Haircut – Carla Diaz"
    assert vevent.decoded("DTSTART") == dt.datetime(2026, 5, 4, 7, 30, tzinfo=dt.UTC)


def test_moving_event_reschedules_booking(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    before_seq = last_seq(db, anna.company_id)
    event = the_event(own_calendar(live, anna))
    tz = __import__("zoneinfo").ZoneInfo(PARIS)
    edit(event, dtstart=dt.datetime(2026, 5, 5, 14, 0, tzinfo=tz),
         dtend=dt.datetime(2026, 5, 5, 15, 15, tzinfo=tz))
    event.save()
    row = appointment(db, appt_id)
    assert row.start_at == dt.datetime(2026, 5, 5, 12, 0, tzinfo=dt.UTC)
    assert row.end_at == dt.datetime(2026, 5, 5, 13, 15, tzinfo=dt.UTC)
    assert row.sequence == 1
    (entry,) = changes(db, anna.company_id, before_seq)
    assert entry.type == "appointment.rescheduled"
    assert (entry.source, entry.actor) == ("caldav", anna.email)
    assert entry.data["before"]["start"].startswith("2026-05-04T09:30")
    assert entry.data["after"]["start"].startswith("2026-05-05T14:00")
    # The client sees the server's version (SEQUENCE raised) on the next read.
    event.load()
    assert int(event.icalendar_component["SEQUENCE"]) == 1


def test_duration_instead_of_dtend_reschedules(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    event = the_event(own_calendar(live, anna))
    edit(event, dtend=None, duration=dt.timedelta(minutes=90))
    event.save()
    row = appointment(db, appt_id)
    assert row.end_at == dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC)


def test_status_cancelled_cancels_booking(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    seq = last_seq(db, anna.company_id)
    event = the_event(own_calendar(live, anna))
    edit(event, status="CANCELLED")
    event.save()
    assert appointment(db, appt_id).status == "cancelled"
    (entry,) = changes(db, anna.company_id, seq)
    assert (entry.type, entry.source, entry.actor) == (
        "appointment.cancelled", "caldav", anna.email)


def test_deleting_event_cancels_booking(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    cal = own_calendar(live, anna)
    the_event(cal).delete()
    row = appointment(db, appt_id)
    assert row.status == "cancelled"
    assert cal.events() == []
    assert changes(db, anna.company_id)[-1].type == "appointment.cancelled"


def test_deletion_refused_by_company_policy(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    with db.sync_session(write=True) as s:
        company = s.get(Company, anna.company_id)
        assert company is not None
        company.caldav_delete = "refuse"
    seq = last_seq(db, anna.company_id)
    event = the_event(own_calendar(live, anna))
    response = raw(live, anna, "DELETE", str(event.url))
    assert response.status_code == 403
    assert "ask the booking system" in response.text
    assert appointment(db, appt_id).status == "confirmed"
    assert changes(db, anna.company_id, seq) == []


def test_description_becomes_notes(live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    event = the_event(own_calendar(live, anna))
    edit(event, description="Bring the colour chart")
    event.save()
    assert appointment(db, appt_id).notes == "Bring the colour chart"
    assert changes(db, anna.company_id)[-1].data["after"] == {"notes": "Bring the colour chart"}


def test_forbidden_field_changes_are_not_applied_and_put_has_no_etag(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    seq = last_seq(db, anna.company_id)
    event = the_event(own_calendar(live, anna))
    etag_before = appointment(db, appt_id).etag
    edit(event, summary="Massage – Someone Else",
         x_calbridge_customer_email="evil@example.com")
    response = raw(live, anna, "PUT", str(event.url), event.data,
                   {"Content-Type": "text/calendar", "If-Match": f'"{etag_before}"'})
    assert response.status_code == 204
    assert "etag" not in {k.lower() for k in response.headers}
    row = appointment(db, appt_id)
    assert (row.service_name, row.customer_name, row.customer_email) == (
        "Haircut", "Carla Diaz", "carla@example.com")
    assert all("customer" not in str(e.data) for e in changes(db, anna.company_id, seq))
    event.load()
    assert str(event.icalendar_component["SUMMARY"]) == "Haircut – Carla Diaz"


def test_client_only_data_survives_round_trip(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    create_appointment(db, anna.company_id, anna.staff_id)
    event = the_event(own_calendar(live, anna))
    ical = event.icalendar_instance
    vevent = next(c for c in ical.walk("VEVENT"))
    alarm = icalendar.Alarm()
    alarm.add("ACTION", "DISPLAY")
    alarm.add("DESCRIPTION", "Reminder")
    alarm.add("TRIGGER", dt.timedelta(minutes=-15))
    vevent.add_component(alarm)
    vevent.add("X-APPLE-TRAVEL-ADVISORY-BEHAVIOR", "AUTOMATIC")
    vevent.add("CATEGORIES", ["Work", "VIP"])
    vevent.add("COLOR", "tomato")
    event.data = ical.to_ical().decode()
    event.save()
    fresh = the_event(own_calendar(live, anna)).icalendar_component
    assert [str(a["TRIGGER"].to_ical(), "ascii") if hasattr(a["TRIGGER"], "to_ical")
            else a["TRIGGER"] for a in fresh.walk("VALARM")]
    assert str(fresh["X-APPLE-TRAVEL-ADVISORY-BEHAVIOR"]) == "AUTOMATIC"
    assert str(fresh["COLOR"]) == "tomato"
    assert "VIP" in fresh["CATEGORIES"].to_ical().decode()
    # ... and a later booking-side change keeps them too.
    with db.sync_session(write=True) as s:
        from bridge.db import repo

        repo.update_appointment(s, anna.company_id, fresh_id(db, anna), {"location": "Room 2"},
                                repo.Actor("api", "test"))
    again = the_event(own_calendar(live, anna)).icalendar_component
    assert str(again["LOCATION"]) == "Room 2"
    assert str(again["COLOR"]) == "tomato"
    assert len(again.walk("VALARM")) == 1


def fresh_id(db: Database, who: StaffLogin) -> int:
    with db.sync_session() as s:
        return int(s.execute(select(Appointment.id).where(Appointment.staff_id == who.staff_id))
                   .scalar_one())


RECURRING = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//EN
BEGIN:VEVENT
UID:gym@example.com
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Paris:20260105T070000
DTEND;TZID=Europe/Paris:20260105T080000
RRULE:FREQ=WEEKLY;COUNT=10
EXDATE;TZID=Europe/Paris:20260112T070000
SUMMARY:Gym
X-PRIVATE-NOTE:keep me
BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:Gym
TRIGGER:-PT10M
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:gym@example.com
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Paris:20260119T070000
DTSTART;TZID=Europe/Paris:20260119T180000
DTEND;TZID=Europe/Paris:20260119T190000
SUMMARY:Gym (evening)
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


def test_new_recurring_event_is_blocked_time(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    cal = own_calendar(live, anna)
    cal.save_event(RECURRING)
    with db.sync_session() as s:
        (row,) = s.execute(select(BlockedTime)).scalars()
        assert row.recurring and row.staff_id == anna.staff_id
        stored = row.ical
    for kept in ("X-PRIVATE-NOTE:keep me", "BEGIN:VALARM", "RRULE:FREQ=WEEKLY;COUNT=10",
                 "EXDATE;TZID=Europe/Paris:20260112T070000",
                 "RECURRENCE-ID;TZID=Europe/Paris:20260119T070000"):
        assert kept in stored
    entry = changes(db, anna.company_id)[-1]
    assert (entry.type, entry.entity, entry.source, entry.actor) == (
        "blocked_time.created", "blocked_time", "caldav", anna.email)
    busy = entry.data["busy"]
    assert len(busy) == 9  # 10 minus the EXDATE
    assert {"start": "2026-01-19T17:00:00+00:00", "end": "2026-01-19T18:00:00+00:00"} in busy
    # Time-range search finds the moved override, not the original slot.
    found = cal.search(start=dt.datetime(2026, 1, 19, 16, tzinfo=dt.UTC),
                       end=dt.datetime(2026, 1, 19, 20, tzinfo=dt.UTC), event=True)
    assert len(found) == 1
    assert cal.search(start=dt.datetime(2026, 1, 12, 5, tzinfo=dt.UTC),
                      end=dt.datetime(2026, 1, 12, 8, tzinfo=dt.UTC), event=True) == []
    (event,) = cal.events()
    assert event.data.replace("\r\n", "\n") == stored.replace("\r\n", "\n")


def test_blocked_time_update_and_delete_logged(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    cal = own_calendar(live, anna)
    event = cal.save_event(RECURRING)
    event.data = RECURRING.replace("COUNT=10", "COUNT=3")
    event.save()
    entry = changes(db, anna.company_id)[-1]
    assert entry.type == "blocked_time.updated" and len(entry.data["busy"]) == 2
    event.delete()
    assert changes(db, anna.company_id)[-1].type == "blocked_time.deleted"
    with db.sync_session() as s:
        assert s.execute(select(BlockedTime)).first() is None


def test_api_change_reaches_client_with_new_etag_and_sync(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    cal = own_calendar(live, anna)
    objects = cal.objects_by_sync_token(load_objects=True)
    token = objects.sync_token
    (event,) = list(objects)
    old_etag = event.props.get("{DAV:}getetag") if hasattr(event, "props") else None
    from bridge.db import repo

    with db.sync_session(write=True) as s:
        repo.update_appointment(s, anna.company_id, appt_id,
                                {"start": "2026-05-04T11:00:00+02:00",
                                 "end": "2026-05-04T12:00:00+02:00"}, repo.Actor("api", "x"))
    updates = cal.objects_by_sync_token(sync_token=token, load_objects=True)
    (changed,) = list(updates)
    comp = changed.icalendar_component
    assert int(comp["SEQUENCE"]) == 1
    assert comp.decoded("DTSTART") == dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC)
    assert updates.sync_token != token
    del old_etag


def test_unknown_sync_token_is_403_valid_sync_token(
        live: LiveServer, anna: StaffLogin) -> None:
    body = ('<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:">'
            "<D:sync-token>urn:calbridge:sync:999999</D:sync-token><D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/></D:prop></D:sync-collection>")
    response = raw(live, anna, "REPORT", anna.calendar_path, body,
                   {"Content-Type": "application/xml"})
    assert response.status_code == 403
    assert "valid-sync-token" in response.text


def test_if_none_match_star_on_existing_is_412(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    cal = own_calendar(live, anna)
    event = cal.save_event(RECURRING)
    response = raw(live, anna, "PUT", str(event.url), RECURRING.replace("Gym", "Swim"),
                   {"Content-Type": "text/calendar", "If-None-Match": "*"})
    assert response.status_code == 412
    with db.sync_session() as s:
        assert "Swim" not in s.execute(select(BlockedTime.ical)).scalar_one()


@pytest.mark.parametrize("when", ["2026-05-04T11:00:00+02:00"])
def test_stale_if_match_is_412_and_changes_nothing(
        live: LiveServer, anna: StaffLogin, db: Database, when: str) -> None:
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    event = the_event(own_calendar(live, anna))
    stale = appointment(db, appt_id).etag
    from bridge.db import repo

    with db.sync_session(write=True) as s:  # the booking system moves it meanwhile
        repo.update_appointment(s, anna.company_id, appt_id,
                                {"start": when, "end": "2026-05-04T12:00:00+02:00"},
                                repo.Actor("api", "x"))
    edit(event, description="late edit")
    response = raw(live, anna, "PUT", str(event.url), event.data,
                   {"Content-Type": "text/calendar", "If-Match": f'"{stale}"'})
    assert response.status_code == 412
    row = appointment(db, appt_id)
    assert row.notes == "" and row.start_at == dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC)


def test_long_blocked_time_found_in_its_middle(live: LiveServer, anna: StaffLogin) -> None:
    cal = own_calendar(live, anna)
    cal.save_event(RECURRING.split("BEGIN:VEVENT")[0] + (
        "BEGIN:VEVENT\r\nUID:holiday@example.com\r\nDTSTAMP:20260101T000000Z\r\n"
        "DTSTART;VALUE=DATE:20260701\r\nDTEND;VALUE=DATE:20260722\r\nSUMMARY:Holiday\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"))
    hits = cal.search(start=dt.datetime(2026, 7, 12, tzinfo=dt.UTC),
                      end=dt.datetime(2026, 7, 13, tzinfo=dt.UTC), event=True)
    assert [str(h.icalendar_component["UID"]) for h in hits] == ["holiday@example.com"]
    assert cal.search(start=dt.datetime(2026, 7, 22, tzinfo=dt.UTC),
                      end=dt.datetime(2026, 7, 23, tzinfo=dt.UTC), event=True) == []


def _listing(live: LiveServer, who: StaffLogin, props: str) -> set[tuple[str, str]]:
    import xml.etree.ElementTree as ET

    body = f'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>{props}</D:prop></D:propfind>'
    response = raw(live, who, "PROPFIND", who.calendar_path, body,
                   {"Depth": "1", "Content-Type": "application/xml"})
    assert response.status_code == 207
    out = set()
    for r in ET.fromstring(response.content).findall("{DAV:}response"):
        out.add((r.findtext("{DAV:}href", ""), r.findtext(".//{DAV:}getetag", "")))
    return out


def test_depth1_listing_fast_path_matches_radicale(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    create_appointment(db, anna.company_id, anna.staff_id)
    own_calendar(live, anna).save_event(RECURRING)
    fast = _listing(live, anna, "<D:getetag/><D:resourcetype/>")
    slow = _listing(live, anna, "<D:getetag/><D:resourcetype/><D:displayname/>")
    assert fast == slow and len(fast) == 3  # the collection and two items
    assert all(etag.startswith('"') for href, etag in fast if href.endswith(".ics"))


def test_depth1_listing_of_colleague_is_refused(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    from tests.dav.conftest import add_staff

    bob = add_staff(db, anna.company_id, "bob@acme.example", "Bob")
    create_appointment(db, anna.company_id, bob.staff_id)
    body = ('<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/>'
            "</D:prop></D:propfind>")
    response = raw(live, anna, "PROPFIND", bob.calendar_path, body,
                   {"Depth": "1", "Content-Type": "application/xml"})
    assert response.status_code == 403
    assert ".ics" not in response.text


def test_alarm_added_on_one_device_reaches_the_other_by_sync(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    create_appointment(db, anna.company_id, anna.staff_id)
    laptop = own_calendar(live, anna)
    token = laptop.objects_by_sync_token(load_objects=False).sync_token
    phone_event = the_event(own_calendar(live, anna))
    ical = phone_event.icalendar_instance
    vevent = next(c for c in ical.walk("VEVENT"))
    vevent.add("COLOR", "teal")
    phone_event.data = ical.to_ical().decode()
    phone_event.save()
    changed = list(laptop.objects_by_sync_token(sync_token=token, load_objects=True))
    assert len(changed) == 1
    assert str(changed[0].icalendar_component["COLOR"]) == "teal"
    assert changes(db, anna.company_id)[-1].type == "appointment.calendar_data_changed"


def test_expired_sync_token_is_403_valid_sync_token(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    cal = own_calendar(live, anna)
    cal.save_event(RECURRING)
    token = cal.objects_by_sync_token(load_objects=False).sync_token
    create_appointment(db, anna.company_id, anna.staff_id)
    with db.sync_session(write=True) as s:  # retention purged the entries after the token
        s.execute(ChangeEntry.__table__.delete())
    body = ('<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:">'
            f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/></D:prop></D:sync-collection>")
    response = raw(live, anna, "REPORT", anna.calendar_path, body,
                   {"Content-Type": "application/xml"})
    assert response.status_code == 403 and "valid-sync-token" in response.text


def _query(live: LiveServer, who: StaffLogin, props: str, path: str = "") -> dict[str, str]:
    import xml.etree.ElementTree as ET

    body = ('<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" '
            f'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop>{props}</D:prop>'
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            '<C:time-range start="20260101T000000Z" end="20260601T000000Z"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")
    response = raw(live, who, "REPORT", path or who.calendar_path, body,
                   {"Depth": "1", "Content-Type": "application/xml"})
    assert response.status_code == 207, response.status_code
    found = {}
    for r in ET.fromstring(response.content).findall("{DAV:}response"):
        data = r.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data", "")
        found[r.findtext("{DAV:}href", "")] = (
            r.findtext(".//{DAV:}getetag", "") + data.replace("\r\n", "\n"))
    return found


def test_time_range_query_from_indexes_matches_radicale(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    create_appointment(db, anna.company_id, anna.staff_id)
    create_appointment(db, anna.company_id, anna.staff_id, start="2026-07-04T09:00:00+02:00",
                       end="2026-07-04T10:00:00+02:00", external_id="later")
    cal = own_calendar(live, anna)
    cal.save_event(RECURRING)
    fast = _query(live, anna, "<D:getetag/><C:calendar-data/>")
    slow = _query(live, anna, "<D:getetag/><C:calendar-data/><D:getcontenttype/>")
    assert fast == slow and len(fast) == 2  # the May appointment and the January series


def test_time_range_query_of_colleague_is_refused(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    from tests.dav.conftest import add_staff

    bob = add_staff(db, anna.company_id, "bob@acme.example", "Bob")
    create_appointment(db, anna.company_id, bob.staff_id)
    body = ('<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/>'
            '</D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            '<C:time-range start="20260101T000000Z" end="20270101T000000Z"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")
    response = raw(live, anna, "REPORT", bob.calendar_path, body,
                   {"Depth": "1", "Content-Type": "application/xml"})
    assert response.status_code == 403 and "Carla" not in response.text
