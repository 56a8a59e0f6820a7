"""Cross-process wake-ups on PostgreSQL: LISTEN for the NOTIFY that every
transaction logging a change sends at commit (`service._mark_changes`), and
pass it on to this process's `SIGNAL`, so a long poll or a webhook worker in
one process learns at once of a change committed by another.

Only a shortcut: waiters poll the database anyway (`[changes] poll_ms`), so
a lost connection costs latency, never an entry. SQLite has no NOTIFY; there
other processes' writes are seen at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from aiohttp import web

from bridge.changes.service import NOTIFY_CHANNEL, SIGNAL
from bridge.keys import DB

log = logging.getLogger("calbridge.changes")


async def listen(url: str) -> None:
    """LISTEN until cancelled, reconnecting with a growing pause."""
    pause = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                pause = 0.5
                SIGNAL.notify()  # anything missed while away is seen by the next poll
                async for _ in conn.notifies():
                    SIGNAL.notify()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("change listener lost its connection (%s); retrying in %.1f s",
                        exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)


async def listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: listen while the app runs (PostgreSQL only)."""
    db = app[DB]
    if db.is_sqlite:
        yield
        return
    url = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    task = asyncio.create_task(listen(url))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
