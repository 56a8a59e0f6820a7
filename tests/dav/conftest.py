"""CalDAV fixtures: a live calbridge server (real TCP port, own event loop in a
thread) so synchronous real clients (the `caldav` library, vdirsyncer) can
talk to it, plus a staff member with an app password."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import caldav
import pytest
import requests
from aiohttp import web

from bridge.app import create_app
from bridge.config import Settings
from bridge.dav import passwords
from bridge.db import repo
from bridge.db.engine import Database
from tests.conftest import Tenant

ADMIN = repo.Actor("admin", "test")


class LiveServer:
    """calbridge on 127.0.0.1:<free port>, served from a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> None:
        self.runner = web.AppRunner(create_app(self.settings), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def live(settings: Settings, tenant: Tenant) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


@dataclass
class StaffLogin:
    staff_id: int
    company_id: int
    email: str
    password: str

    @property
    def calendar_path(self) -> str:
        return f"/dav/{self.email}/calendar/"


def add_staff(db: Database, company_id: int, email: str, name: str = "Anna",
              groups: list[int] | None = None) -> StaffLogin:
    with db.sync_session(write=True) as s:
        st = repo.create_staff(s, company_id, {"email": email, "name": name,
                                               "group_ids": groups or []}, ADMIN)
        _, password = passwords.create(s, company_id, st.id, "test", ADMIN)
        return StaffLogin(st.id, company_id, st.email, password)


@pytest.fixture
def anna(db: Database, tenant: Tenant) -> StaffLogin:
    return add_staff(db, tenant.company_id, "anna@acme.example", "Anna Berg")


_CLIENTS: list[caldav.DAVClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def dav_client(live: LiveServer, who: StaffLogin, path: str = "/.well-known/caldav"
               ) -> caldav.DAVClient:
    client = caldav.DAVClient(url=live.url + path, username=who.email, password=who.password)
    _CLIENTS.append(client)
    return client


def raw(live: LiveServer, who: StaffLogin | None, method: str, path: str, body: str = "",
        headers: dict[str, str] | None = None) -> requests.Response:
    """One plain HTTP request (status codes and headers exactly as sent)."""
    url = path if path.startswith("http") else live.url + path
    auth = (who.email, who.password) if who is not None else None
    with requests.Session() as session:
        return session.request(method, url, data=body.encode(), headers=headers or {},
                               auth=auth, allow_redirects=False, timeout=30)


def create_appointment(db: Database, company_id: int, staff_id: int, **fields: Any) -> int:
    payload: dict[str, Any] = {
        "staff_id": staff_id, "start": "2026-05-04T09:30:00+02:00",
        "end": "2026-05-04T10:30:00+02:00", "service_name": "Haircut",
        "customer_name": "Carla Diaz", "customer_email": "carla@example.com",
    } | fields
    with db.sync_session(write=True) as s:
        return repo.create_appointment(s, company_id, payload, repo.Actor("api", "test")).id
