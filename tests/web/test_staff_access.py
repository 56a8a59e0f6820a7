"""App passwords (create, shown once; revoke with a confirmation) and the
health of external calendars, on the staff pages. An app password made in
the console opens the real CalDAV endpoint; once revoked it no longer does."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from bridge.app import create_app
from bridge.config import Settings
from bridge.dav import passwords
from bridge.db import repo
from bridge.db.engine import Database
from bridge.db.models import CalendarLink
from bridge.sync import service as calendars
from tests.conftest import Tenant, count_rows
from tests.web.conftest import Admin, add_staff, csrf_of, post_form, sign_in


async def _propfind(client: TestClient[Any, Any], email: str, password: str) -> int:
    token = base64.b64encode(f"{email}:{password}".encode()).decode()
    response = await client.request(
        "PROPFIND", f"/dav/{email}/", headers={"Depth": "0", "Authorization": f"Basic {token}"})
    return response.status


async def test_app_password_is_shown_once_opens_caldav_and_can_be_revoked(
    console: TestClient[Any, Any], db: Database, tenant: Tenant
) -> None:
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    page_url = f"/admin/staff/{staff_id}"
    page = await (await console.get(page_url)).text()
    assert "No app password yet." in page
    assert "<code>anna@acme.example.com</code>" in page and "/dav/</code>" in page
    for client_name in ("Apple Calendar on macOS", "iPhone and iPad", "Thunderbird",
                        "Android (DAVx5)", "Outlook and Office 365"):
        assert client_name in page

    created = await post_form(console, page_url, f"{page_url}/app-passwords", {"label": "iPhone"})
    assert created.status == 200
    shown = await created.text()
    match = re.search(r'id="new-app-password" value="([a-z0-9-]{27})"', shown)
    assert match, shown
    password = match.group(1)
    again = await (await console.get(page_url)).text()
    assert password not in again and "iPhone" in again and "never used" in again
    assert await _propfind(console, "anna@acme.example.com", password) == 207

    pw_id = re.search(rf"{page_url}/app-passwords/(\d+)/revoke", again)
    assert pw_id
    confirm_url = pw_id.group(0)
    confirm = await (await console.get(confirm_url)).text()
    assert "Revoke this app password?" in confirm and "iPhone of Anna Müller" in confirm
    revoked = await console.post(confirm_url, data={"csrf": csrf_of(confirm)},
                                 allow_redirects=False)
    assert revoked.status == 303
    page = await (await console.get(revoked.headers["Location"])).text()
    assert "App password revoked" in page and "No app password yet." in page
    assert await _propfind(console, "anna@acme.example.com", password) == 401
    assert (await console.get(confirm_url)).status == 404


async def test_app_password_mistakes_change_nothing(
    console: TestClient[Any, Any], db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    theirs = add_staff(db, other_tenant, "zed@globex.example.com", "Zed Globex")
    with db.sync_session(write=True) as s:
        row, _ = passwords.create(s, other_tenant.company_id, theirs, "phone",
                                  repo.Actor("api", "t"))
        their_pw = row.id
    too_long = await post_form(console, f"/admin/staff/{staff_id}",
                               f"/admin/staff/{staff_id}/app-passwords", {"label": "x" * 201})
    assert too_long.status == 422
    assert "label is longer than 200 characters" in await too_long.text()
    page = await (await console.get(f"/admin/staff/{staff_id}")).text()
    for path in (f"/admin/staff/{theirs}/app-passwords",
                 f"/admin/staff/{theirs}/app-passwords/{their_pw}/revoke",
                 f"/admin/staff/{staff_id}/app-passwords/{their_pw}/revoke"):
        response = await console.post(path, data={"csrf": csrf_of(page), "label": "x"},
                                      allow_redirects=False)
        assert response.status == 404, path
    forged = await console.post(f"/admin/staff/{staff_id}/app-passwords",
                                data={"csrf": "nope", "label": "x"}, allow_redirects=False)
    assert forged.status == 403
    assert count_rows(db, "app_passwords") == 1
    with db.sync_session() as s:
        assert passwords.list_for(s, other_tenant.company_id, theirs)[0].revoked_at is None


@pytest.fixture
def quiet_settings(settings: Settings) -> Settings:
    return settings.replace(sync={"enabled": False})


async def test_external_calendar_health_is_shown(
    aiohttp_client: Any, quiet_settings: Settings, admin: Admin, db: Database, tenant: Tenant
) -> None:
    client = await aiohttp_client(create_app(quiet_settings))
    assert (await sign_in(client, admin.email, admin.password)).status == 303
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    assert "No external calendar linked." in await (
        await client.get(f"/admin/staff/{staff_id}")).text()
    with db.sync_session(write=True) as s:
        link = calendars.create_link(s, quiet_settings, tenant.company_id, staff_id, {
            "kind": "ics", "label": "Personal iCloud",
            "url": "https://calendar.example.com/anna.ics"}, repo.Actor("api", "t"))
        s.flush()
        s.execute(update(CalendarLink).where(CalendarLink.id == link.id).values(
            health="failing", consecutive_failures=3,
            last_error="HTTP 503 from calendar.example.com"))
    page = await (await client.get(f"/admin/staff/{staff_id}")).text()
    assert "Personal iCloud" in page and ">failing</span>" in page
    assert "HTTP 503 from calendar.example.com" in page
    assert "https://calendar.example.com/anna.ics" not in page  # the URL is a secret
    listing = await (await client.get("/admin/staff")).text()
    assert "calendar failing" in listing


BLOCKED = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:dentist-1@test\r
DTSTAMP:20261101T000000Z\r
DTSTART;TZID=Europe/Paris:20261124T120000\r
DTEND;TZID=Europe/Paris:20261124T130000\r
SUMMARY:Dentist\r
END:VEVENT\r
END:VCALENDAR\r
"""


async def test_edits_made_in_a_calendar_app_show_in_words(
    console: TestClient[Any, Any], db: Database, tenant: Tenant
) -> None:
    staff_id = add_staff(db, tenant, "anna@acme.example.com", "Anna Müller")
    with db.sync_session(write=True) as s:
        appt = repo.create_appointment(s, tenant.company_id, {
            "staff_id": staff_id, "start": "2026-11-25T10:00:00+01:00",
            "end": "2026-11-25T10:30:00+01:00", "service_name": "Check-up",
            "customer_name": "Léa Martin"}, repo.Actor("api", ""))
        href = appt.href
        _, password = passwords.create(s, tenant.company_id, staff_id, "phone",
                                       repo.Actor("admin", "t"))
    token = base64.b64encode(f"anna@acme.example.com:{password}".encode()).decode()
    auth = {"Authorization": f"Basic {token}"}
    base = "/dav/anna@acme.example.com/calendar/"
    put = await console.put(f"{base}dentist.ics", data=BLOCKED,
                            headers={**auth, "Content-Type": "text/calendar"})
    assert put.status == 201, await put.text()
    deleted = await console.delete(f"{base}{href}", headers=auth)
    assert deleted.status in (200, 204), await deleted.text()  # Radicale answers 200 + multistatus

    page = await (await console.get("/admin/changes?source=caldav")).text()
    assert ("Anna Müller</strong> blocked time (Dentist) in their calendar: "
            "Tue 24 Nov, 12:00–13:00") in page
    assert ("Anna Müller</strong> cancelled Check-up – Léa Martin in their calendar "
            "(Wed 25 Nov, 10:00–10:30)") in page
    assert "booked" not in page
