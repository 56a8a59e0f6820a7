"""Signing in and out of the console: sessions in signed HttpOnly SameSite
cookies, CSRF on the sign-in form, rate limiting, expired and forged
sessions, the `calbridge admin` command and the demo admin."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.app import create_app
from bridge.cli import main
from bridge.config import Settings
from bridge.db.engine import Database
from bridge.demo import load_demo
from bridge.web import sessions
from tests.conftest import ROOT, Tenant, count_rows
from tests.web.conftest import Admin, csrf_of, set_session_cookie, sign_in


def _query(location: str) -> tuple[str, dict[str, str]]:
    parts = urllib.parse.urlsplit(location)
    return parts.path, dict(urllib.parse.parse_qsl(parts.query))


async def test_pages_need_a_session(client: TestClient[Any, Any], admin: Admin) -> None:
    response = await client.get("/admin/staff?q=an", allow_redirects=False)
    assert response.status == 303
    assert _query(response.headers["Location"]) == ("/admin/login", {"next": "/admin/staff?q=an"})


async def test_sign_in_sets_a_signed_httponly_cookie_and_sign_out_ends_it(
    client: TestClient[Any, Any], admin: Admin
) -> None:
    response = await sign_in(client, admin.email, admin.password, "/admin/changes")
    assert response.status == 303
    assert response.headers["Location"] == "/admin/changes"
    cookie = response.cookies[sessions.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/admin"
    page = await client.get("/admin/staff")
    assert page.status == 200
    html = await page.text()
    assert "Acme" in html and admin.email in html
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"

    out = await client.post("/admin/logout", data={"csrf": csrf_of(html)},
                            allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/admin/staff", allow_redirects=False)).status == 303
    login = await client.get("/admin/login?done=signed-out")
    assert "You are signed out." in await login.text()


async def test_wrong_password_is_refused_with_the_reason(
    client: TestClient[Any, Any], admin: Admin
) -> None:
    response = await sign_in(client, admin.email, "not it")
    assert response.status == 401
    assert "Wrong email or password." in await response.text()
    assert sessions.COOKIE not in response.cookies
    unknown = await sign_in(client, "nobody@acme.example.com", "x")
    assert unknown.status == 401
    assert "Wrong email or password." in await unknown.text()


async def test_sign_in_without_the_form_token_is_refused(
    client: TestClient[Any, Any], admin: Admin, db: Database
) -> None:
    response = await client.post("/admin/login", data={
        "email": admin.email, "password": admin.password, "csrf": "forged"},
        allow_redirects=False)
    assert response.status == 403
    assert "expired" in await response.text()
    assert sessions.COOKIE not in response.cookies
    assert count_rows(db, "login_failures") == 0


@pytest.fixture
def limited_settings(settings: Settings) -> Settings:
    return settings.replace(web={"login_attempts": 3, "login_window_seconds": 600})


async def test_sign_in_is_rate_limited(
    aiohttp_client: Any, limited_settings: Settings, admin: Admin, db: Database
) -> None:
    client = await aiohttp_client(create_app(limited_settings))
    for _ in range(3):
        assert (await sign_in(client, admin.email, "guess")).status == 401
    blocked = await sign_in(client, admin.email, admin.password)
    assert blocked.status == 429
    assert "Too many failed sign-ins. Try again in 10 minutes." in await blocked.text()
    assert 0 < int(blocked.headers["Retry-After"]) <= 600
    assert sessions.COOKIE not in blocked.cookies
    # The address is limited too, whichever email it tries next.
    other = await sign_in(client, "someone@acme.example.com", "guess")
    assert other.status == 429
    assert count_rows(db, "login_failures") == 6  # 3 per email + 3 per address


async def test_failures_past_the_window_no_longer_count(
    aiohttp_client: Any, settings: Settings, admin: Admin, db: Database
) -> None:
    import datetime as dt

    from sqlalchemy import update

    from bridge.db.models import LoginFailure

    client = await aiohttp_client(create_app(settings.replace(web={"login_attempts": 2})))
    for _ in range(2):
        assert (await sign_in(client, admin.email, "guess")).status == 401
    assert (await sign_in(client, admin.email, admin.password)).status == 429
    with db.sync_session(write=True) as s:  # an hour passes
        s.execute(update(LoginFailure).values(
            at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    assert (await sign_in(client, admin.email, "guess")).status == 401
    assert count_rows(db, "login_failures") == 2  # the old ones were purged
    assert (await sign_in(client, admin.email, admin.password)).status == 303


async def test_expired_session_asks_to_sign_in_again_and_changes_nothing(
    client: TestClient[Any, Any], admin: Admin, settings: Settings, db: Database
) -> None:
    response = await sign_in(client, admin.email, admin.password)
    raw = response.cookies[sessions.COOKIE].value
    live = sessions.decode(raw, settings.secret())
    assert live is not None
    old = sessions.Session(live.admin_id, live.company_id, live.issued - 7200,
                           int(time.time()) - 1, live.nonce, live.fingerprint)
    set_session_cookie(client, sessions.encode(old, settings.secret()))
    page = await client.get("/admin/staff", allow_redirects=False)
    assert page.status == 303
    assert _query(page.headers["Location"]) == (
        "/admin/login", {"next": "/admin/staff", "expired": "1"})
    login = await client.get(page.headers["Location"])
    assert "Your session expired. Please sign in again." in await login.text()
    before = count_rows(db, "change_log")
    set_session_cookie(client, sessions.encode(old, settings.secret()))
    post = await client.post("/admin/company/feeds", data={
        "csrf": sessions.csrf_token(settings.secret(), old.nonce), "privacy": "full"},
        allow_redirects=False)
    assert post.status == 303 and "expired=1" in post.headers["Location"]
    assert count_rows(db, "feed_links") == 0
    assert count_rows(db, "change_log") == before


async def test_forged_or_foreign_cookies_are_ignored(
    client: TestClient[Any, Any], admin: Admin, settings: Settings
) -> None:
    response = await sign_in(client, admin.email, admin.password)
    raw = response.cookies[sessions.COOKIE].value
    live = sessions.decode(raw, settings.secret())
    assert live is not None
    # Signed with another secret, or claims edited: not a session.
    forged = sessions.encode(live, b"another-secret")
    edited = sessions.encode(
        sessions.Session(live.admin_id, live.company_id + 1, live.issued, live.expires,
                         live.nonce, live.fingerprint), b"another-secret")
    for value in (forged, edited, raw[:-2] + "xx", "garbage"):
        set_session_cookie(client, value)
        assert (await client.get("/admin/staff", allow_redirects=False)).status == 303


async def test_a_new_password_ends_old_sessions(
    client: TestClient[Any, Any], admin: Admin, db: Database
) -> None:
    from sqlalchemy import select

    from bridge.db.models import AdminUser
    from bridge.web import accounts

    await sign_in(client, admin.email, admin.password)
    assert (await client.get("/admin/staff", allow_redirects=False)).status == 200
    with db.sync_session(write=True) as s:
        row = s.execute(select(AdminUser).where(AdminUser.email == admin.email)).scalar_one()
        accounts.set_password(s, row.id, "a brand new password")
    assert (await client.get("/admin/staff", allow_redirects=False)).status == 303


def test_admin_create_prints_a_one_time_password(
    db_url: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CALBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("CALBRIDGE_SECURITY_SECRET_KEY", "test-secret-" + "x" * 32)
    monkeypatch.chdir(ROOT)
    assert main(["admin", "create", "--company", "acme", "--email", "Ops@Acme.example.com"]) == 0
    out = capsys.readouterr().out
    assert "One-time password (shown once, store it now):" in out
    assert main(["admin", "create", "--company", "acme", "--email", "x@acme.example.com",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["email"] == "x@acme.example.com" and len(data["password"]) >= 20
    assert data["login_url"].endswith("/admin/login")
    # Same email twice, or an unknown company: one line on stderr, exit 2.
    assert main(["admin", "create", "--company", "acme", "--email", "ops@acme.example.com"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["admin", "create", "--company", "nope", "--email", "y@acme.example.com"]) == 2
    assert "no company" in capsys.readouterr().err
    assert main(["admin", "reset-password", "--email", "x@acme.example.com", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["password"] != data["password"]


async def test_cli_password_signs_in(
    aiohttp_client: Any, settings: Settings, db_url: str, tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CALBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("CALBRIDGE_SECURITY_SECRET_KEY", "test-secret-" + "x" * 32)
    monkeypatch.chdir(ROOT)
    assert main(["admin", "create", "--company", "acme", "--email", "new@acme.example.com",
                 "--json"]) == 0
    password = json.loads(capsys.readouterr().out)["password"]
    client = await aiohttp_client(create_app(settings))
    assert (await sign_in(client, "new@acme.example.com", password)).status == 303


async def test_demo_prints_a_stable_admin_sign_in(
    aiohttp_client: Any, settings: Settings, db: Database, tmp_path: Path
) -> None:
    import bridge.web.demo  # noqa: F401  (registers the demo admin)

    first = load_demo(db, settings)
    second = load_demo(db, settings)
    line = first["admin_console"]
    assert line == second["admin_console"]
    assert "admin_console" in first["_text"] or "admin console" in first["_text"]
    email, password = line.split("sign in as ")[1].rstrip(")").split(" / ")
    client = await aiohttp_client(create_app(settings))
    response = await sign_in(client, email, password)
    assert response.status == 303
    html = await (await client.get("/admin/staff")).text()
    assert "Anna Müller" in html and "Demo Health Clinic" in html


async def test_cookies_are_secure_behind_https(
    aiohttp_client: Any, settings: Settings, admin: Admin
) -> None:
    client = await aiohttp_client(create_app(
        settings.replace(server={"public_url": "https://calendar.example.com"})))
    login = await client.get("/admin/login")
    assert login.cookies[sessions.LOGIN_COOKIE]["secure"]
    # The test client speaks plain HTTP, so it keeps no Secure cookie: sign in by hand.
    token = csrf_of(await login.text())
    response = await client.post("/admin/login", data={
        "email": admin.email, "password": admin.password, "csrf": token},
        cookies={sessions.LOGIN_COOKIE: login.cookies[sessions.LOGIN_COOKIE].value},
        allow_redirects=False)
    assert response.status == 303
    assert response.cookies[sessions.COOKIE]["secure"]


async def test_unknown_console_pages_are_html_404s(console: TestClient[Any, Any]) -> None:
    for home in ("/admin", "/admin/"):
        response = await console.get(home, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/admin/staff")
    response = await console.get("/admin/nothing-here")
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "There is no such page here." in await response.text()


async def test_behind_a_proxy_the_forwarded_address_is_limited(
    aiohttp_client: Any, settings: Settings, admin: Admin
) -> None:
    client = await aiohttp_client(create_app(settings.replace(
        server={"trust_proxy": True}, web={"login_attempts": 2})))

    async def attempt(email: str, addr: str, spoofed: str = "10.9.9.9") -> int:
        page = await client.get("/admin/login")
        # our proxy appends the address it saw to whatever the client sent
        response = await client.post("/admin/login", data={
            "email": email, "password": "guess", "csrf": csrf_of(await page.text())},
            headers={"X-Forwarded-For": f"{spoofed}, {addr}"}, allow_redirects=False)
        return response.status

    assert await attempt("a1@acme.example.com", "203.0.113.7", "1.1.1.1") == 401
    assert await attempt("a2@acme.example.com", "203.0.113.7", "2.2.2.2") == 401
    # a client inventing a new first hop each time is still the same client
    assert await attempt("a3@acme.example.com", "203.0.113.7", "3.3.3.3") == 429
    assert await attempt("a4@acme.example.com", "198.51.100.4") == 401
