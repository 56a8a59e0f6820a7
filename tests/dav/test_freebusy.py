"""CalDAV free-busy-query (RFC 4791 §7.10) on a staff calendar counts the same
busy time as the availability API: appointments, blocked time and the staff
member's external calendars. Rights and bad requests stay Radicale's."""

from __future__ import annotations

import datetime as dt

import icalendar

from bridge.db.engine import Database
from bridge.db.models import CalendarLink, ExternalBusy
from tests.conftest import Tenant
from tests.dav.conftest import LiveServer, StaffLogin, add_staff, create_appointment, raw

QUERY = """<?xml version="1.0" encoding="utf-8" ?>
<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">
  <C:time-range start="20260504T000000Z" end="20260505T000000Z"/>
</C:free-busy-query>"""
UTC = dt.UTC


def external_busy(db: Database, who: StaffLogin, start: dt.datetime, end: dt.datetime) -> None:
    """A linked calendar's last good snapshot (as the poller stores it)."""
    with db.sync_session(write=True) as s:
        link = CalendarLink(company_id=who.company_id, staff_id=who.staff_id, kind="ics",
                            label="iCloud", credentials="x", health="ok")
        s.add(link)
        s.flush()
        s.add(ExternalBusy(link_id=link.id, staff_id=who.staff_id, start_at=start, end_at=end))


def busy_periods(body: bytes) -> list[tuple[dt.datetime, dt.datetime]]:
    cal = icalendar.Calendar.from_ical(body)
    periods = []
    for fb in cal.walk("VFREEBUSY"):
        values = fb.get("FREEBUSY")
        for value in values if isinstance(values, list) else [values]:
            for start, end in value.dts if hasattr(value, "dts") else [value.dt]:
                periods.append((start, end))
    return sorted(periods)


def test_free_busy_counts_appointments_and_external_calendars(
        live: LiveServer, db: Database, anna: StaffLogin) -> None:
    create_appointment(db, anna.company_id, anna.staff_id)  # 07:30-08:30 UTC
    external_busy(db, anna, dt.datetime(2026, 5, 4, 12, tzinfo=UTC),
                  dt.datetime(2026, 5, 4, 13, tzinfo=UTC))
    external_busy(db, anna, dt.datetime(2026, 5, 6, 12, tzinfo=UTC),  # outside the range
                  dt.datetime(2026, 5, 6, 13, tzinfo=UTC))
    resp = raw(live, anna, "REPORT", anna.calendar_path, QUERY,
               {"Content-Type": "application/xml", "Depth": "1"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/calendar")
    assert busy_periods(resp.content) == [
        (dt.datetime(2026, 5, 4, 7, 30, tzinfo=UTC), dt.datetime(2026, 5, 4, 8, 30, tzinfo=UTC)),
        (dt.datetime(2026, 5, 4, 12, tzinfo=UTC), dt.datetime(2026, 5, 4, 13, tzinfo=UTC)),
    ]


def test_free_busy_keeps_rights_and_errors(live: LiveServer, db: Database, anna: StaffLogin,
                                           tenant: Tenant) -> None:
    ben = add_staff(db, tenant.company_id, "ben@acme.example", "Ben")
    external_busy(db, anna, dt.datetime(2026, 5, 4, 12, tzinfo=UTC),
                  dt.datetime(2026, 5, 4, 13, tzinfo=UTC))
    resp = raw(live, ben, "REPORT", anna.calendar_path, QUERY,
               {"Content-Type": "application/xml", "Depth": "1"})
    assert resp.status_code == 403
    assert b"FREEBUSY" not in resp.content
    resp = raw(live, None, "REPORT", anna.calendar_path, QUERY,
               {"Content-Type": "application/xml", "Depth": "1"})
    assert resp.status_code == 401
    resp = raw(live, anna, "REPORT", anna.calendar_path, "<not xml",
               {"Content-Type": "application/xml", "Depth": "1"})
    assert resp.status_code == 400
