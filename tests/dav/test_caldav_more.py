"""Discovery behind a proxy, the demo login, and the booking API racing CalDAV."""

from __future__ import annotations

import concurrent.futures
import datetime as dt

from bridge.config import Settings
from bridge.db import repo
from bridge.db.engine import Database
from bridge.db.models import Appointment
from bridge.demo import load_demo
from tests.conftest import Tenant
from tests.dav.conftest import LiveServer, StaffLogin, create_appointment, dav_client, raw


def test_well_known_behind_proxy_uses_forwarded_origin(settings: Settings,
                                                        tenant: Tenant) -> None:
    server = LiveServer(settings.replace(server={"trust_proxy": True}))
    server.start()
    try:
        response = raw(server, None, "GET", "/.well-known/caldav", headers={
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "cal.example.com"})
        assert response.headers["Location"] == "https://cal.example.com/dav/"
    finally:
        server.stop()


def test_forwarded_headers_ignored_without_trust_proxy(live: LiveServer) -> None:
    response = raw(live, None, "GET", "/.well-known/caldav", headers={
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example.com"})
    assert response.headers["Location"] == f"{live.url}/dav/"


def test_demo_login_shows_appointments(live: LiveServer, db: Database,
                                       settings: Settings) -> None:
    info = load_demo(db, settings)
    email, password = info["caldav"][1].split(" / ")
    login = StaffLogin(0, 0, email, password)
    principal = dav_client(live, login).principal()
    names = sorted(str(c.url).rstrip("/").rsplit("/", 1)[1] for c in principal.calendars())
    assert "calendar" in names and any(n.startswith("group-") for n in names)
    (own,) = [c for c in principal.calendars() if str(c.url).endswith("/calendar/")]
    assert own.events()
    again = load_demo(db, settings)  # idempotent: the same login still works
    assert again["caldav"] == info["caldav"]


def test_booking_api_racing_caldav_put_loses_nothing(
        live: LiveServer, anna: StaffLogin, db: Database) -> None:
    for round_ in range(4):
        appt_id = create_appointment(db, anna.company_id, anna.staff_id,
                                     external_id=f"race-{round_}")
        with db.sync_session() as s:
            appt = s.get(Appointment, appt_id)
            assert appt is not None and appt.dav_text is not None
            text, etag, href = appt.dav_text, appt.etag, appt.href
        moved = text.replace("T093000", "T140000").replace("T103000", "T150000")

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            api_done = pool.submit(_api_note, db, anna, appt_id)
            status = pool.submit(raw, live, anna, "PUT", anna.calendar_path + href, moved, {
                "Content-Type": "text/calendar", "If-Match": f'"{etag}"'}).result().status_code
            api_done.result()
        with db.sync_session() as s:
            row = s.get(Appointment, appt_id)
            assert row is not None
            assert row.notes == "from the booking system"  # never lost
            if status in (200, 204):
                assert row.start_at == dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
            else:
                assert status == 412
                assert row.start_at == dt.datetime(2026, 5, 4, 7, 30, tzinfo=dt.UTC)


def _api_note(db: Database, who: StaffLogin, appt_id: int) -> None:
    with db.sync_session(write=True) as s:
        repo.update_appointment(s, who.company_id, appt_id, {"notes": "from the booking system"},
                                repo.Actor("api", "booking"))
