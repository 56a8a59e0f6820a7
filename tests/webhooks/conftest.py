"""A real webhook receiver: an aiohttp server on 127.0.0.1 that verifies
every request with the Standard Webhooks reference verifier and records
what it got; it can be told to fail, or be stopped and started again on
the same port."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from bridge.config import Settings
from tests.conftest import make_settings
from tests.server import free_port


@dataclass
class Received:
    message_id: str
    type: str
    seq: int | None
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Receiver:
    port: int
    secrets: list[str] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    status: int = 200
    handler: Callable[[web.Request], Any] | None = None
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        if self.handler is not None:
            result: web.StreamResponse = await self.handler(request)
            return result
        return await self.accept(request)

    async def accept(self, request: web.Request) -> web.StreamResponse:
        """Verify the signature and record the message (or answer 401)."""
        body = await request.read()
        headers = dict(request.headers)
        verified = False
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified = True
                break
            except Exception:
                continue
        if not verified:
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        if self.status >= 300:
            return web.Response(status=self.status, text="receiver says no")
        payload = json.loads(body)
        self.got.append(Received(headers["webhook-id"], payload["type"],
                                 payload["data"].get("seq"), payload, headers))
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def types(self) -> list[str]:
        return [r.type for r in self.got]

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"receiver never saw it; got {self.types()}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(free_port())
    await r.start()
    yield r
    await r.stop()


FAST = {
    "webhooks": {"allow_networks": "127.0.0.1/32", "retry_base_seconds": 0.05,
                 "retry_max_seconds": 0.2, "timeout_seconds": 2.0},
    "changes": {"poll_ms": 20},
}


def fast_settings(db_url: str, tmp_path: Path, **extra: dict[str, Any]) -> Settings:
    sections = {k: dict(v) for k, v in FAST.items()}
    for k, v in extra.items():
        sections.setdefault(k, {}).update(v)
    return make_settings(db_url, tmp_path, **sections)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Webhook tests may send to 127.0.0.1 and retry fast."""
    return fast_settings(db_url, tmp_path)


class ThreadedReceiver:
    """The same receiver on its own event loop in a thread, for sync tests
    that drive real blocking clients (the `caldav` library)."""

    def __init__(self) -> None:
        self.receiver = Receiver(free_port())
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        self._run(self.receiver.start())

    def stop(self) -> None:
        self._run(self.receiver.stop())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def wait_for(self, predicate: Callable[[], bool], seconds: float = 15) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver never saw it; got {self.receiver.types()}")
            time.sleep(0.02)
