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
from collections.abc import AsyncIterator, Callable

logger = logging.getLogger("calbridge.access")
_SECRET_DIRS = ("feeds", "invite", "set-password")  # the next path segment is a secret
_SECRET_PREFIXES = tuple(f"/{name}/" for name in _SECRET_DIRS)
_SECRET_PATHS = re.compile(f"^/({'|'.join(map(re.escape, _SECRET_DIRS))})/[^/]+")
# A JSON string literal (json.dumps of a str without its Python layers).
_quoted: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
BATCH = 512
# A client polling a feed sends the same request again and again: each line is
# the duration put into a template remembered per (method, path, route,
# status, address). (A feed 304 costs tens of microseconds.)
CACHE_MAX = 4096
_templates: dict[tuple[str, str, str, int, str | None], str] = {}


def redact_path(path: str) -> str:
    """The path as it may be logged: secret tokens replaced."""
    match = _SECRET_PATHS.match(path) if path.startswith(_SECRET_PREFIXES) else None
    if match is None:
        return path
    return f"/{match[1]}/[redacted]{path[match.end():]}"


def format_line(method: str, path: str, route: str, status: int, seconds: float,
                remote: str | None) -> str:
    key = (method, path, route, status, remote)
    template = _templates.get(key)
    if template is None:
        head = (f'{{"method": {_quoted(method)}, "path": {_quoted(redact_path(path))}, '
                f'"route": {_quoted(route)}, "status": {status}, "ms": ')
        tail = f', "remote": {"null" if remote is None else _quoted(remote)}}}'
        template = head.replace("%", "%%") + "%.2f" + tail.replace("%", "%%")
        if len(_templates) >= CACHE_MAX:
            _templates.clear()
        _templates[key] = template
    return template % (seconds * 1000)


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
