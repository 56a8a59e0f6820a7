"""Fixtures for feed tests: a salon with staff, a group, appointments around
today, blocked time, and helpers to create feed links and fetch feeds."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import icalendar
import pytest

from bridge.config import Settings
from bridge.db import repo
from bridge.db.engine import Database
from bridge.db.models import Appointment, BlockedTime
from bridge.feeds import service
from tests.conftest import Tenant

ADMIN = repo.Actor("admin", "test")
T = TypeVar("T")
TODAY = dt.datetime.now(dt.UTC).date()


def at(days: int, hour: int, minute: int = 0, zone: str = "Europe/Paris") -> str:
    day = TODAY + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), ZoneInfo(zone)).isoformat()


@dataclass
class Salon:
    db: Database
    settings: Settings
    tenant: Tenant
    anna: int
    ben: int
    chloe: int
    group: int
    appointments: dict[str, int] = field(default_factory=dict)

    def book(self, key: str, staff_id: int, days: int, hour: int, **extra: Any) -> int:
        payload = {"staff_id": staff_id, "start": at(days, hour), "end": at(days, hour + 1),
                   "service_name": "Haircut", "customer_name": f"Customer {key}",
                   "customer_email": f"{key}@customer.example", "location": "Salon, chair 2",
                   **extra}
        with self.db.sync_session(write=True) as s:
            appt = repo.create_appointment(s, self.tenant.company_id, payload, ADMIN)
            self.appointments[key] = appt.id
            return appt.id

    def update(self, key: str, payload: dict[str, Any]) -> Appointment:
        with self.db.sync_session(write=True) as s:
            appt, _ = repo.update_appointment(s, self.tenant.company_id, self.appointments[key],
                                              payload, ADMIN)
            return appt

    def link(self, **payload: Any) -> tuple[int, str]:
        """(feed id, token) of a new link."""
        with self.db.sync_session(write=True) as s:
            link = service.create_feed(s, self.tenant.company_id, payload,
                                       self.settings.secret(), ADMIN)
            return link.id, service.token_of(link, self.settings.secret())

    def rotate(self, feed_id: int) -> str:
        """Rotate a link; its new token."""
        with self.db.sync_session(write=True) as s:
            link = service.rotate_feed(s, self.tenant.company_id, feed_id,
                                       self.settings.secret(), ADMIN)
            return service.token_of(link, self.settings.secret())

    def block(self, staff_id: int, ical_text: str, first: dt.datetime, last: dt.datetime,
              uid: str = "block@client") -> int:
        return insert_blocked(self.db, self.tenant.company_id, staff_id, ical_text, first, last,
                              uid)


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Blocking database work from an async test, off the event loop.

    The app's background tasks (webhooks, calendar sync) hold SQLite write
    transactions across awaits; a blocking write on the loop would wait for
    them until the busy timeout."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def insert_blocked(db: Database, company_id: int, staff_id: int, ical_text: str,
                   first: dt.datetime, last: dt.datetime, uid: str = "block@client") -> int:
    """Blocked time as the CalDAV side stores it (rendered as it renders it)."""
    with db.sync_session(write=True) as s:
        row = BlockedTime(company_id=company_id, staff_id=staff_id, uid=uid, href=f"{uid}.ics",
                          summary="private", ical=ical_text, recurring="RRULE" in ical_text,
                          first_occurrence=first, last_occurrence=last, etag="e1", version=1)
        s.add(row)
        s.flush()
        service.render_blocked_time(s, row)
        repo.log_change(s, company_id, "blocked_time.created", "blocked_time", row.id,
                        repo.Actor("caldav", "test"), {}, staff_id=staff_id)
        return row.id


@pytest.fixture
def salon(db: Database, settings: Settings, tenant: Tenant) -> Salon:
    with db.sync_session(write=True) as s:
        cid = tenant.company_id
        group = repo.create_group(s, cid, {"slug": "stylists", "name": "Stylists"}, ADMIN)
        anna = repo.create_staff(s, cid, {"email": "anna@salon.example", "name": "Anna Müller",
                                          "timezone": "Europe/Paris", "group_ids": [group.id]},
                                 ADMIN)
        ben = repo.create_staff(s, cid, {"email": "ben@salon.example", "name": "Ben Okafor",
                                         "timezone": "Europe/London", "group_ids": [group.id]},
                                ADMIN)
        chloe = repo.create_staff(s, cid, {"email": "chloe@salon.example", "name": "Chloé Durand",
                                           "timezone": "America/New_York"}, ADMIN)
        ids = (anna.id, ben.id, chloe.id, group.id)
    return Salon(db, settings, tenant, *ids)


def events(body: bytes) -> list[icalendar.Event]:
    return list(icalendar.Calendar.from_ical(body.decode()).walk("VEVENT"))


def by_uid(body: bytes) -> dict[str, icalendar.Event]:
    found: dict[str, icalendar.Event] = {}
    for event in events(body):
        uid = str(event["UID"])
        assert uid not in found, f"UID {uid} twice in one feed"
        found[uid] = event
    return found


def weekly_block(start_days: int = -7, tz: str = "Europe/Paris") -> tuple[str, dt.datetime,
                                                                          dt.datetime]:
    start = dt.datetime.combine(TODAY + dt.timedelta(days=start_days), dt.time(12), ZoneInfo(tz))
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
        "BEGIN:VEVENT\r\nUID:block@client\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID={tz}:{start:%Y%m%dT%H%M%S}\r\n"
        f"DTEND;TZID={tz}:{start + dt.timedelta(hours=1):%Y%m%dT%H%M%S}\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=10\r\n"
        f"EXDATE;TZID={tz}:{start + dt.timedelta(days=14):%Y%m%dT%H%M%S}\r\n"
        "SUMMARY:Therapy session\r\nDESCRIPTION:very private\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )
    return text, start.astimezone(dt.UTC), (start + dt.timedelta(weeks=10)).astimezone(dt.UTC)
