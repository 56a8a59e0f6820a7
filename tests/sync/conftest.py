"""Real servers on 127.0.0.1 for the external-calendar tests: a stock
Radicale (filesystem storage, htpasswd plain auth) as somebody's CalDAV
account, an aiohttp ICS server that can fail on demand, an aiosmtpd SMTP
server and an aiohttp receiver standing in for Slack."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller
from sqlalchemy import update

from bridge.app import create_app
from bridge.config import Settings
from bridge.db.models import CalendarLink
from bridge.keys import DB, SYNCER
from bridge.sync.scheduler import JobReport
from tests.conftest import make_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Radicale -------------------------------------------------------------------

@dataclass
class Radicale:
    url: str
    htpasswd: Path

    def add_user(self, password: str = "app-password-1") -> tuple[str, str]:
        user = f"u{uuid.uuid4().hex[:10]}"
        self.set_password(user, password)
        return user, password

    def set_password(self, user: str, password: str) -> None:
        lines = [ln for ln in self.htpasswd.read_text().splitlines()
                 if ln and not ln.startswith(user + ":")]
        lines.append(f"{user}:{password}")
        self.htpasswd.write_text("\n".join(lines) + "\n")

    def make_calendar(self, user: str, password: str, name: str = "Personal") -> str:
        import caldav

        with caldav.DAVClient(url=self.url, username=user, password=password) as client:
            cal = client.principal().make_calendar(name=name)
            return str(cal.url)

    def calendar(self, user: str, password: str, url: str) -> Any:
        import caldav

        return caldav.DAVClient(url=self.url, username=user, password=password).calendar(url=url)


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radicale]:
    root = tmp_path_factory.mktemp("radicale")
    htpasswd = root / "users"
    htpasswd.write_text("")
    port = free_port()
    cfg = root / "config"
    cfg.write_text(f"""
[server]
hosts = 127.0.0.1:{port}
[auth]
type = htpasswd
htpasswd_filename = {htpasswd}
htpasswd_encryption = plain
delay = 0
[storage]
filesystem_folder = {root / "collections"}
[rights]
type = owner_only
[logging]
level = warning
""")
    proc = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                proc.kill()
                raise RuntimeError(f"radicale did not start: {err}") from None
            time.sleep(0.05)
    yield Radicale(f"http://127.0.0.1:{port}/", htpasswd)
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


# --- an ICS server that can misbehave ----------------------------------------------

def vevent(uid: str, start: dt.datetime, end: dt.datetime, extra: str = "") -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART:{start.astimezone(dt.UTC).strftime(fmt)}\r\n"
            f"DTEND:{end.astimezone(dt.UTC).strftime(fmt)}\r\nSUMMARY:private {uid}\r\n"
            f"{extra}END:VEVENT\r\n")


@dataclass
class IcsSource:
    url: str = ""
    events: dict[str, str] = field(default_factory=dict)
    raw: str | None = None  # served as is instead of the events
    mode: str = "ok"  # ok | 500 | 401 | 404 | timeout | html
    version: int = 1
    requests: int = 0
    not_modified: int = 0

    def add(self, uid: str, start: dt.datetime, end: dt.datetime, extra: str = "") -> None:
        self.events[uid] = vevent(uid, start, end, extra)
        self.version += 1

    def remove(self, uid: str) -> None:
        del self.events[uid]
        self.version += 1

    def set_raw(self, text: str) -> None:
        self.raw = text
        self.version += 1

    def body(self) -> str:
        if self.raw is not None:
            return self.raw
        return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
                + "".join(self.events.values()) + "END:VCALENDAR\r\n")


@pytest.fixture
async def ics(aiohttp_server: Any) -> IcsSource:
    source = IcsSource()

    async def handler(request: web.Request) -> web.StreamResponse:
        source.requests += 1
        if source.mode == "timeout":
            await asyncio.sleep(2)
        if source.mode in ("500", "401", "404"):
            return web.Response(status=int(source.mode), text="no")
        if source.mode == "html":
            return web.Response(text="<html><body>Sign in</body></html>",
                                content_type="text/html")
        etag = f'"v{source.version}"'
        if request.headers.get("If-None-Match") == etag:
            source.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(text=source.body(), content_type="text/calendar",
                            headers={"ETag": etag})

    app = web.Application()
    app.router.add_get("/private/secret-token-abc123/basic.ics", handler)
    server = await aiohttp_server(app)
    source.url = str(server.make_url("/private/secret-token-abc123/basic.ics"))
    return source


# --- SMTP and Slack -----------------------------------------------------------------

class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@dataclass
class Smtp:
    port: int
    box: _Mailbox

    @property
    def messages(self) -> list[tuple[list[str], Message]]:
        return self.box.messages


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Smtp]:
    box = _Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield Smtp(port, box)
    controller.stop()


@pytest.fixture
def smtp(smtp_server: Smtp) -> Smtp:
    smtp_server.box.messages.clear()
    return smtp_server


@dataclass
class Slack:
    url: str
    posts: list[dict[str, Any]]


@pytest.fixture
async def slack(aiohttp_server: Any) -> Slack:
    posts: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        posts.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/services/T000/B000/XXXX", handler)
    server = await aiohttp_server(app)
    return Slack(str(server.make_url("/services/T000/B000/XXXX")), posts)


# --- the app under test -------------------------------------------------------------

SYNC = {"enabled": False, "allow_private_addresses": True, "timeout_seconds": 1.0,
        "failure_threshold": 2, "min_interval_seconds": 1, "jitter": 0.0}


@pytest.fixture
def sync_settings(db_url: str, tmp_path: Path, smtp: Smtp, slack: Slack) -> Settings:
    return make_settings(db_url, tmp_path, sync=SYNC,
                         smtp={"host": "127.0.0.1", "port": smtp.port},
                         alerts={"slack_webhook_url": slack.url})


@pytest.fixture
async def app_client(aiohttp_client: Any, sync_settings: Settings
                     ) -> AsyncIterator[TestClient[Any, Any]]:
    yield await aiohttp_client(create_app(sync_settings))


async def poll(client: TestClient[Any, Any]) -> list[JobReport]:
    """Make every link due now and run one poller tick."""
    app = client.app
    assert app is not None

    def due(s: Any) -> None:
        s.execute(update(CalendarLink).values(
            next_poll_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))

    await app[DB].write(due)
    return await app[SYNCER].run_once()


async def tick(client: TestClient[Any, Any]) -> list[JobReport]:
    """One poller tick without forcing anything due."""
    assert client.app is not None
    return await client.app[SYNCER].run_once()
