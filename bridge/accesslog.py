"""The access log: one JSON line per request, without secrets, cheap to keep.

A request only appends a tuple; lines are formatted and handed to the
`calbridge.access` logger in batches (one record per batch, lines joined by
newlines) when `[server] access_log_flush_seconds` has passed or 512 lines
are waiting, and at shutdown. With the flush interval at 0 every request is
written at once. A feed answering 304 costs tens of microseconds, and a
logging record per request was most of that (see the feeds benchmark).

What is logged: method, path with secret tokens replaced by `[redacted]`,
route pattern, status, duration and client address. Never query strings,
headers, API keys, feed tokens or passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator

logger = logging.getLogger("calbridge.access")
_SECRET_PATHS = re.compile(r"^/(feeds|invite|set-password)/[^/]+")
_dumps = json.dumps
BATCH = 512


def redact_path(path: str) -> str:
    """The path as it may be logged: secret tokens replaced."""
    return _SECRET_PATHS.sub(lambda m: f"/{m.group(1)}/[redacted]", path)


def format_line(method: str, path: str, route: str, status: int, seconds: float,
                remote: str | None) -> str:
    return (f'{{"method": {_dumps(method)}, "path": {_dumps(redact_path(path))}, '
            f'"route": {_dumps(route)}, "status": {status}, "ms": {seconds * 1000:.2f}, '
            f'"remote": {_dumps(remote)}}}')


class AccessLog:
    def __init__(self, flush_seconds: float) -> None:
        self.flush_seconds = flush_seconds
        self.pending: list[tuple[str, str, str, int, float, str | None]] = []

    def add(self, method: str, path: str, route: str, status: int, seconds: float,
            remote: str | None) -> None:
        self.pending.append((method, path, route, status, seconds, remote))
        if self.flush_seconds <= 0 or len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        logger.info("\n".join(format_line(*entry) for entry in batch))

    async def run(self) -> AsyncIterator[None]:
        """cleanup_ctx: flush on a timer while the app runs, and at shutdown."""
        async def flusher() -> None:
            while True:
                await asyncio.sleep(self.flush_seconds)
                self.flush()

        task = asyncio.create_task(flusher()) if self.flush_seconds > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.flush()
