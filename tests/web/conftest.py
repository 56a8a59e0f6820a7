"""Fixtures for the admin console: an admin per tenant, a signed-in client,
form helpers (the CSRF token is read from the page, as a browser sends it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.db import repo
from bridge.db.engine import Database
from bridge.web import accounts
from tests.conftest import Tenant

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Admin:
    email: str
    password: str
    company_id: int


def make_admin(db: Database, tenant: Tenant, email: str) -> Admin:
    with db.sync_session(write=True) as s:
        accounts.create_admin(s, tenant.slug, email, PASSWORD)
    return Admin(email, PASSWORD, tenant.company_id)


@pytest.fixture
def admin(db: Database, tenant: Tenant) -> Admin:
    return make_admin(db, tenant, "boss@acme.example.com")


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def sign_in(client: TestClient[Any, Any], email: str, password: str,
                  next_path: str = "") -> Any:
    page = await client.get("/admin/login")
    token = csrf_of(await page.text())
    return await client.post("/admin/login", data={
        "email": email, "password": password, "csrf": token, "next": next_path,
    }, allow_redirects=False)


@pytest.fixture
async def console(client: TestClient[Any, Any], admin: Admin) -> TestClient[Any, Any]:
    """A client signed in as the tenant's admin."""
    response = await sign_in(client, admin.email, admin.password)
    assert response.status == 303, await response.text()
    return client


async def post_form(client: TestClient[Any, Any], page: str, action: str,
                    data: dict[str, str] | None = None) -> Any:
    """Open `page`, then submit a form to `action` with the page's CSRF token."""
    html = await (await client.get(page)).text()
    return await client.post(action, data={"csrf": csrf_of(html), **(data or {})},
                             allow_redirects=False)


def add_staff(db: Database, tenant: Tenant, email: str, name: str,
              group_ids: list[int] | None = None) -> int:
    with db.sync_session(write=True) as s:
        staff = repo.create_staff(s, tenant.company_id, {
            "email": email, "name": name, "timezone": "Europe/Paris",
            "group_ids": group_ids or []}, repo.Actor("api", "test"))
        return staff.id


def add_group(db: Database, tenant: Tenant, slug: str, name: str) -> int:
    with db.sync_session(write=True) as s:
        return repo.create_group(s, tenant.company_id, {"slug": slug, "name": name},
                                 repo.Actor("api", "test")).id


def set_session_cookie(client: TestClient[Any, Any], value: str) -> None:
    """Replace the session cookie as a browser would hold it (path /admin)."""
    from yarl import URL

    from bridge.web import sessions

    jar = client.session.cookie_jar
    jar.clear(lambda morsel: morsel.key == sessions.COOKIE)
    jar.update_cookies({sessions.COOKIE: value}, response_url=URL(str(client.make_url("/admin/"))))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Inbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        import email
        import email.policy

        self.messages: list[email.message.EmailMessage] = []
        self._parse = lambda raw: email.message_from_bytes(raw, policy=email.policy.default)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(self._parse(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Any:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port  # type: ignore[attr-defined]
    yield inbox
    controller.stop()
