"""Done-when of issue 5, end to end: a staff member's edits in a CalDAV
client (the `caldav` library against a live calbridge) reach a signed
webhook receiver and the change feed with before/after values, in order,
through a receiver outage and a server restart, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from bridge.config import Settings
from bridge.db.engine import Database
from tests.conftest import Tenant
from tests.dav.conftest import (
    LiveServer,
    StaffLogin,
    _close_clients,  # noqa: F401 (autouse: closes the caldav clients)
    add_staff,
    create_appointment,
    dav_client,
)
from tests.webhooks.conftest import ThreadedReceiver

PARIS = ZoneInfo("Europe/Paris")
BLOCK = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Apple Calendar//EN
BEGIN:VEVENT
UID:lunch-block-1@example.com
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Paris:20260506T120000
DTEND;TZID=Europe/Paris:20260506T130000
SUMMARY:Dentist (private)
END:VEVENT
END:VCALENDAR
"""


@pytest.fixture
def receiver_thread() -> Iterator[ThreadedReceiver]:
    r = ThreadedReceiver()
    r.start()
    yield r
    r.close()


def api(live: LiveServer, tenant: Tenant, method: str, path: str, **kwargs: Any) -> Any:
    resp = requests.request(method, live.url + path, headers=tenant.headers, timeout=30, **kwargs)
    assert resp.status_code < 300, resp.text
    return resp.json()


def test_calendar_edits_reach_the_webhook_and_the_feed_through_outage_and_restart(
        settings: Settings, db: Database, tenant: Tenant,
        receiver_thread: ThreadedReceiver) -> None:
    receiver = receiver_thread.receiver
    anna: StaffLogin = add_staff(db, tenant.company_id, "anna@acme.example", "Anna Berg")
    appt_id = create_appointment(db, tenant.company_id, anna.staff_id)
    live = LiveServer(settings)
    live.start()
    try:
        ep = api(live, tenant, "POST", "/api/v1/webhooks", json={
            "url": receiver.url, "event_types": ["appointment.*", "blocked_time.*"]})
        receiver.secrets.append(ep["secret"])
        start = api(live, tenant, "GET", "/api/v1/changes")["next_cursor"]

        receiver_thread.stop()  # the booking system's receiver is down
        principal = dav_client(live, anna).principal()
        (cal,) = [c for c in principal.calendars() if str(c.url).endswith("/calendar/")]
        (event,) = cal.events()
        ical = event.icalendar_instance
        vevent = next(iter(ical.walk("VEVENT")))
        for name in ("DTSTART", "DTEND"):
            vevent.pop(name)
        vevent.add("DTSTART", dt.datetime(2026, 5, 5, 14, 0, tzinfo=PARIS))
        vevent.add("DTEND", dt.datetime(2026, 5, 5, 15, 0, tzinfo=PARIS))
        event.data = ical.to_ical().decode()
        event.save()  # 23:10, Anna moves the appointment in her calendar app
        cal.save_event(BLOCK)  # and blocks personal time
        event.delete()  # then cancels the appointment

        feed = api(live, tenant, "GET", "/api/v1/changes", params={"after": start})
        kinds = [(e["type"], e["source"], e["actor"]) for e in feed["items"]]
        assert kinds == [("appointment.rescheduled", "caldav", anna.email),
                         ("blocked_time.created", "caldav", anna.email),
                         ("appointment.cancelled", "caldav", anna.email)]
        moved = feed["items"][0]["data"]
        assert moved["before"]["start"] == "2026-05-04T09:30:00+02:00"
        assert moved["after"]["start"] == "2026-05-05T14:00:00+02:00"
        assert moved["after"]["end"] == "2026-05-05T15:00:00+02:00"
        # The worker queues the deliveries (on its next tick) and keeps trying,
        # and failing, while the receiver is down.
        deadline = time.monotonic() + 10

        def tried() -> bool:
            items = api(live, tenant, "GET", f"/api/v1/webhooks/{ep['id']}/deliveries")["items"]
            return bool(items and items[0]["attempts"])

        while not tried():
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        live.stop()  # the server restarts while deliveries are pending

    live = LiveServer(settings)
    live.start()
    try:
        receiver_thread.start()
        receiver_thread.wait_for(lambda: len(receiver.got) >= 3)
        assert receiver.bad_signatures == 0
        assert [r.type for r in receiver.got] == ["appointment.rescheduled",
                                                  "blocked_time.created",
                                                  "appointment.cancelled"]
        seqs = [r.seq for r in receiver.got]
        assert seqs == [e["seq"] for e in feed["items"]]
        hook = receiver.got[0].payload["data"]
        assert hook["entity_id"] == appt_id and hook["source"] == "caldav"
        assert hook["data"]["before"]["start"] == "2026-05-04T09:30:00+02:00"
        assert hook["data"]["after"]["start"] == "2026-05-05T14:00:00+02:00"
        assert receiver.got[1].payload["data"]["data"]["busy"] == [
            {"start": "2026-05-06T10:00:00+00:00", "end": "2026-05-06T11:00:00+00:00"}]
        deadline = time.monotonic() + 10  # the worker records what it sent right after
        while True:
            log = api(live, tenant, "GET", f"/api/v1/webhooks/{ep['id']}/deliveries")["items"]
            if all(d["status"] == "succeeded" for d in log):
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert log[0]["attempts"] >= 2 and log[0]["last_status_code"] == 200
    finally:
        live.stop()
