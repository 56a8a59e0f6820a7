"""The calendar-link API: credentials encrypted at rest and never returned,
every bad input a 4xx that changes nothing, preconditions, tenant
isolation, and the company's failure policy."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from bridge.config import Settings
from bridge.sync import crypto
from tests.conftest import Tenant, count_rows
from tests.sync.conftest import IcsSource, poll
from tests.sync.test_ics_sync import link_ics, make_staff


async def test_credentials_are_encrypted_and_never_returned(
        app_client: Any, tenant: Tenant, ics: IcsSource, db: Any,
        sync_settings: Settings) -> None:
    staff = await make_staff(app_client, tenant)
    link = await link_ics(app_client, tenant, staff, ics.url)
    assert "secret-token-abc123" not in str(link)
    assert link["url"] == ics.url.split("/private/")[0] + "/private/…"
    resp = await app_client.post(f"/api/v1/staff/{staff}/calendar-links", headers=tenant.headers,
                                 json={"kind": "caldav", "server_url": "https://dav.example.com/",
                                       "username": "anna", "password": "hunter2-app-pw",
                                       "calendar_url": "https://dav.example.com/anna/cal/"})
    assert resp.status == 201
    assert "hunter2" not in await resp.text()
    listed = await (await app_client.get(f"/api/v1/staff/{staff}/calendar-links",
                                         headers=tenant.headers)).text()
    assert "hunter2" not in listed and "secret-token" not in listed
    with db.sync_session() as s:
        dump = "\n".join(str(r) for r in s.execute(text("SELECT * FROM calendar_links")))
        log = "\n".join(str(r) for r in s.execute(text("SELECT data FROM change_log")))
        tokens = list(s.execute(text("SELECT credentials FROM calendar_links ORDER BY id"))
                      .scalars())
    for secret in ("hunter2", "secret-token-abc123"):
        assert secret not in dump and secret not in log
    assert crypto.decrypt(sync_settings, tokens[0]) == {"url": ics.url}
    assert crypto.decrypt(sync_settings, tokens[1]) == {"password": "hunter2-app-pw"}


async def test_bad_input_is_refused_and_changes_nothing(app_client: Any, tenant: Tenant,
                                                        db: Any) -> None:
    staff = await make_staff(app_client, tenant)
    path = f"/api/v1/staff/{staff}/calendar-links"
    ics = {"kind": "ics", "url": "https://cal.example.com/a.ics"}
    dav = {"kind": "caldav", "server_url": "https://dav.example.com/", "username": "a",
           "password": "p"}
    cases = [
        ({"url": "https://x.example/a.ics"}, "kind"),
        ({**ics, "kind": "google"}, "kind"),
        ({**ics, "url": "ftp://cal.example.com/a.ics"}, "url"),
        ({**ics, "url": "not a url"}, "url"),
        ({**ics, "url": 5}, "url"),
        ({**ics, "add_appointments": True}, "add_appointments"),
        ({**ics, "check_conflicts": False}, "check_conflicts"),
        ({**ics, "check_conflicts": "yes"}, "check_conflicts"),
        ({**ics, "interval_seconds": 0}, "interval_seconds"),
        ({**ics, "interval_seconds": "60"}, "interval_seconds"),
        ({**ics, "password": "x"}, "password"),
        ({**ics, "colour": "red"}, "colour"),
        ({**dav, "password": ""}, "password"),
        ({**dav, "username": ""}, "username"),
        ({**dav, "url": "https://x.example/"}, "url"),
        ({**dav, "server_url": "dav.example.com"}, "server_url"),
    ]
    for body, field in cases:
        resp = await app_client.post(path, json=body, headers=tenant.headers)
        assert resp.status == 422, body
        problem = await resp.json()
        assert problem["field"] == field, (body, problem)
    resp = await app_client.post(path, data=b"{nope", headers={
        **tenant.headers, "Content-Type": "application/json"})
    assert resp.status == 400
    resp = await app_client.post("/api/v1/staff/999/calendar-links", json=ics,
                                 headers=tenant.headers)
    assert resp.status == 404
    assert count_rows(db, "calendar_links") == 0


async def test_private_addresses_are_refused_unless_allowed(
        aiohttp_client: Any, tenant: Tenant, ics: IcsSource, db_url: str, tmp_path: Any,
        db: Any) -> None:
    from bridge.app import create_app
    from tests.conftest import make_settings
    from tests.sync.conftest import SYNC

    settings = make_settings(db_url, tmp_path, sync={**SYNC, "allow_private_addresses": False})
    client = await aiohttp_client(create_app(settings))
    staff = await make_staff(client, tenant)
    await link_ics(client, tenant, staff, ics.url)
    [report] = await poll(client)
    assert report.outcome.error is not None
    assert report.outcome.error.message.endswith("is not a public address")
    assert ics.requests == 0
    path = f"/api/v1/staff/{staff}/calendar-links/discover"
    resp = await client.post(path, headers=tenant.headers, json={
        "server_url": "http://127.0.0.1:9/", "username": "a", "password": "b"})
    assert resp.status == 422


async def test_update_delete_preconditions_and_isolation(
        app_client: Any, tenant: Tenant, other_tenant: Tenant, ics: IcsSource, db: Any) -> None:
    staff = await make_staff(app_client, tenant)
    link = await link_ics(app_client, tenant, staff, ics.url)
    path = f"/api/v1/staff/{staff}/calendar-links/{link['id']}"
    for method in ("get", "patch", "delete"):
        resp = await app_client.request(method, path, json={"label": "x"},
                                        headers=other_tenant.headers)
        assert resp.status == 404, method
    resp = await app_client.patch(path, json={"label": "Home", "interval_seconds": 120},
                                  headers={**tenant.headers, "If-Match": '"v1"'})
    assert resp.status == 200 and resp.headers["ETag"] == '"v2"'
    data = await resp.json()
    assert (data["label"], data["interval_seconds"]) == ("Home", 120)
    resp = await app_client.patch(path, json={"label": "Stale"},
                                  headers={**tenant.headers, "If-Match": '"v1"'})
    assert resp.status == 412
    resp = await app_client.patch(path, json={"kind": "caldav"}, headers=tenant.headers)
    assert resp.status == 422
    resp = await app_client.patch(path, json={"username": "x"}, headers=tenant.headers)
    assert resp.status == 422
    resp = await app_client.delete(path, headers={**tenant.headers, "If-Match": '"v1"'})
    assert resp.status == 412
    assert (await (await app_client.get(path, headers=tenant.headers)).json())["label"] == "Home"
    resp = await app_client.delete(path, headers=tenant.headers)
    assert resp.status == 204
    assert count_rows(db, "calendar_links") == 0
    assert (await app_client.get(path, headers=tenant.headers)).status == 404


async def test_policy_read_and_set(app_client: Any, tenant: Tenant, db: Any) -> None:
    resp = await app_client.get("/api/v1/calendar-policy", headers=tenant.headers)
    assert await resp.json() == {"on_calendar_failure": "keep_booking", "slack_webhook": None,
                                 "email_admins": True}
    for body, field in (({"on_calendar_failure": "sometimes"}, "on_calendar_failure"),
                        ({"slack_webhook_url": "ftp://x.example/"}, "slack_webhook_url"),
                        ({"email_admins": "no"}, "email_admins"),
                        ({"colour": "red"}, "colour")):
        resp = await app_client.patch("/api/v1/calendar-policy", headers=tenant.headers,
                                      json=body)
        assert resp.status == 422 and (await resp.json())["field"] == field
    assert count_rows(db, "company_alerts") == 0
    resp = await app_client.patch("/api/v1/calendar-policy", headers=tenant.headers, json={
        "on_calendar_failure": "stop_booking", "email_admins": False,
        "slack_webhook_url": "https://hooks.slack.com/services/T0/B0/SECRETPART"})
    expected = {"on_calendar_failure": "stop_booking", "email_admins": False,
                "slack_webhook": "https://hooks.slack.com/services/…"}
    assert await resp.json() == expected
    resp = await app_client.get("/api/v1/calendar-policy", headers=tenant.headers)
    assert await resp.json() == expected
    with db.sync_session() as s:
        dump = str(list(s.execute(text("SELECT * FROM company_alerts"))))
        log = str(list(s.execute(text("SELECT data FROM change_log"))))
    assert "SECRETPART" not in dump and "SECRETPART" not in log


def test_rotated_credentials_key_still_decrypts(settings: Settings) -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = crypto.encrypt(settings.replace(sync={"credentials_key": old}), {"password": "p"})
    rotated = settings.replace(sync={"credentials_key": f"{new},{old}"})
    assert crypto.decrypt(rotated, token) == {"password": "p"}
    try:
        crypto.decrypt(settings.replace(sync={"credentials_key": new}), token)
    except crypto.CredentialError as exc:
        assert "credentials_key" in str(exc)
    else:
        raise AssertionError("decrypted with the wrong key")


async def test_webcal_addresses_are_read_over_https(app_client: Any, tenant: Tenant, db: Any,
                                                    sync_settings: Settings) -> None:
    staff = await make_staff(app_client, tenant)
    link = await link_ics(app_client, tenant, staff,
                          "webcal://p01-calendars.example.com/published/2/SECRETTOKEN")
    assert link["url"] == "https://p01-calendars.example.com/published/…"
    with db.sync_session() as s:
        token = s.execute(text("SELECT credentials FROM calendar_links")).scalar_one()
    assert crypto.decrypt(sync_settings, token) == {
        "url": "https://p01-calendars.example.com/published/2/SECRETTOKEN"}
