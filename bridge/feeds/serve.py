"""The per-request path of a feed: token look-up, version check, cached body.

No aiohttp here (routes.py speaks HTTP). A request costs one keyed hash of
the token, one indexed look-up that also returns the company's change
counter (`Company.change_seq`, bumped by every change-log entry), and a
dictionary hit when that version was seen before (DESIGN rule 5).

The cache holds assembled bodies per feed link, keyed by (version, window
day). It is process memory, but every request re-checks the version in the
database, so a rotated or revoked token answers 404 on its next request in
every worker (DESIGN rule 7).

On PostgreSQL the look-up is a prepared query on the worker's own
autocommit connection, sent after the request arrived; the look-ups of
requests that arrive while one is out travel together in the next query, so
under load a worker sends one query per round trip, not one per request.

On SQLite the check is cheaper still: `PRAGMA data_version` on a dedicated
read connection changes whenever any other connection (any process)
commits, so while it is unchanged the token's previous look-up is still the
database's answer and is reused without a query. Even that pragma costs a
statement; in WAL mode a 48-byte read of the wal-index header (the first
bytes of the `-shm` file, which every commit rewrites:
https://sqlite.org/walformat.html#the_wal_index_file_format) says first
whether anything may have changed, and only then is the pragma asked. While
that header stays the same, a token asked before maps straight to its
cached feed: a repeated request costs one dictionary hit and that one read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hmac
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from multidict import CIMultiDict
from psycopg import pq

from bridge.config import Settings
from bridge.db.engine import Database
from bridge.feeds.service import TOKEN_RE, FeedBody, build_feed

MAX_REMEMBERED = 100_000  # look-ups and fresh tokens kept (then all forgotten at once)
WAL_HEADER = 48  # bytes: the first copy of the wal-index header in the -shm file
_RESOLVE_SQL = (
    "SELECT f.id, f.company_id, f.token_hash, c.change_seq FROM feed_links f "
    "JOIN companies c ON c.id = f.company_id "
    "WHERE f.token_hash = {p} AND f.revoked_at IS NULL"
)
_PG_STATEMENT = "calbridge_feed_lookup"  # prepared once per connection


async def _pg_lookup(pgconn: Any, hashes: list[str]) -> dict[str, tuple[int, int, int]]:
    """Run the prepared look-up on libpq directly (psycopg's `pq` layer).

    The statement and its one parameter never change, so psycopg's cursor,
    query conversion and adaptation, which cost most of a look-up's time,
    are skipped: the hashes are hex, so the array literal needs no quoting,
    and the answer is read as text. Only this worker uses the connection."""
    loop = asyncio.get_running_loop()
    fd = pgconn.socket
    pgconn.send_query_prepared(_PG_STATEMENT.encode(),
                               [("{" + ",".join(hashes) + "}").encode()])
    while pgconn.flush():  # the rest of the query waits for the socket
        await _ready(loop, fd, loop.add_writer, loop.remove_writer)
    pgconn.consume_input()
    while pgconn.is_busy():
        await _ready(loop, fd, loop.add_reader, loop.remove_reader)
        pgconn.consume_input()
    found: dict[str, tuple[int, int, int]] = {}
    error = None
    while (res := pgconn.get_result()) is not None:
        if res.status != pq.ExecStatus.TUPLES_OK:
            error = res.error_message.decode(errors="replace") or str(res.status)
            continue
        for row in range(res.ntuples):
            link, company, hashed, version = (res.get_value(row, col) for col in range(4))
            found[hashed.decode()] = (int(link), int(company), int(version))
    if error is not None:
        raise psycopg.OperationalError(f"feed look-up failed: {error}")
    return found


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, add: Callable[..., None],
                 remove: Callable[[int], object]) -> None:
    """Until `fd` is readable (add_reader) or writable (add_writer)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    add(fd, wake)
    try:
        await ready
    finally:
        remove(fd)


CALENDAR = "text/calendar; charset=utf-8"
# Headers of every feed response (RFC 9111 §5.2.2.4 no-cache: revalidate each time,
# cheap with 304; private: the URL is a secret).
BASE_HEADERS = {
    "Cache-Control": "private, no-cache",
    "Vary": "Accept-Encoding",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


_DAY: list[Any] = [None, None]  # [day number, date]


def _utc_today() -> dt.date:
    """Today's UTC date, cheaply (it is asked on every request)."""
    day = int(time.time() // 86_400)
    if _DAY[0] != day:
        _DAY[:] = [day, dt.date(1970, 1, 1) + dt.timedelta(days=day)]
    today: dt.date = _DAY[1]
    return today


@dataclass
class CachedFeed:
    """One assembled feed with the headers every response of it carries."""

    key: tuple[Any, ...]  # (company version, window day, feed settings)
    link_id: int
    feed: FeedBody
    _gzip: bytes | None = field(default=None, repr=False)
    gzip_etag: str = field(init=False)
    # Response headers, built once: [gzip?] for a 304, and for a 200 (with
    # Content-Type and, gzip'd, Content-Encoding). aiohttp copies a
    # CIMultiDict far faster than it builds one from a dict.
    headers_304: tuple[CIMultiDict[str], CIMultiDict[str]] = field(init=False, repr=False)
    headers_200: tuple[CIMultiDict[str], CIMultiDict[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # A strong ETag names one representation: the gzip one gets its own.
        self.gzip_etag = self.feed.etag[:-1] + '-gz"'
        common = {**BASE_HEADERS, "Last-Modified": self.feed.last_modified}
        plain = {**common, "ETag": self.feed.etag}
        gz = {**common, "ETag": self.gzip_etag}
        self.headers_304 = (CIMultiDict(plain), CIMultiDict(gz))
        self.headers_200 = (CIMultiDict({**plain, "Content-Type": CALENDAR}),
                            CIMultiDict({**gz, "Content-Type": CALENDAR,
                                         "Content-Encoding": "gzip"}))

    @property
    def size(self) -> int:
        # The body, the VEVENT texts kept to apply changes (about as large), gzip.
        return 2 * len(self.feed.body) + (len(self._gzip) if self._gzip else 0)

    def gzip_body(self) -> bytes:
        if self._gzip is None:
            self._gzip = gzip.compress(self.feed.body, compresslevel=6, mtime=0)
        return self._gzip


class FeedServer:
    """Resolves tokens and hands out cached feed bodies (one per worker)."""

    def __init__(
        self, db: Database, settings: Settings, secret: bytes, *,
        today: Callable[[], dt.date] | None = None, max_cache_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.db = db
        self.settings = settings
        self.secret = secret
        self.today = today or _utc_today
        self.max_cache_bytes = max_cache_bytes
        self._cache: OrderedDict[int, CachedFeed] = OrderedDict()
        self._cache_bytes = 0
        self._building: dict[tuple[int, tuple[Any, ...]], asyncio.Future[CachedFeed]] = {}
        self._sqlite: sqlite3.Connection | None = None
        self._sqlite_path = db.url.database if db.is_sqlite else None
        self._data_version = -1
        self._shm = -1  # fd of the -shm file (SQLite in WAL mode), read-only
        self._shm_header = b""
        self._hashes: dict[str, str] = {}  # well-formed token -> its keyed hash
        self._resolved: dict[str, tuple[int, int, int] | None] = {}  # hash -> look-up
        # token -> its feed, valid while the wal-index header is _shm_header
        self._fresh: dict[str, CachedFeed] = {}
        self._pg: psycopg.AsyncConnection[Any] | None = None
        # hash -> the futures of the requests waiting for the next query
        self._pg_waiting: dict[str, list[asyncio.Future[tuple[int, int, int] | None]]] = {}
        self._pg_batch: asyncio.Future[None] | None = None
        self.builds = 0  # feeds assembled by this worker (for tests and the benchmark)
        self.queries = 0  # token look-ups sent to the database by this worker
        fs = settings.feeds
        self._settings_key = (fs.window_days_back, fs.window_days_ahead, fs.refresh_minutes)

    # -- token -> (link id, company id, version) --------------------------------------
    def _sqlite_conn(self) -> sqlite3.Connection:
        if self._sqlite is None:
            assert self._sqlite_path
            conn = sqlite3.connect(self._sqlite_path, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.db.settings.busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # maps the wal-index
            if str(mode).lower() == "wal":
                try:  # this connection stays open, so SQLite keeps this very file
                    self._shm = os.open(self._sqlite_path + "-shm", os.O_RDONLY)
                except OSError:
                    self._shm = -1  # then the pragma alone, on every request
            self._sqlite = conn
        return self._sqlite

    def _unchanged(self, conn: sqlite3.Connection) -> bool:
        """Whether nobody has committed since the previous call.

        The header is read before the pragma: a commit between the two then
        shows as a changed header on the next call. A torn read (a writer
        mid-update) only looks changed, which costs the pragma."""
        if self._shm >= 0:
            header = os.pread(self._shm, WAL_HEADER, 0)
            if header == self._shm_header:
                return True
            self._shm_header = header
            self._fresh.clear()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return True
        self._data_version = version
        return False

    def _resolve_sqlite(self, hashed: str) -> tuple[int, int, int] | None:
        conn = self._sqlite_conn()
        if not self._unchanged(conn):
            self._resolved.clear()
        elif hashed in self._resolved:
            return self._resolved[hashed]
        self.queries += 1
        row = conn.execute(_RESOLVE_SQL.format(p="?"), (hashed,)).fetchone()
        result = (row[0], row[1], row[3]) if row is not None and row[2] == hashed else None
        if len(self._resolved) > MAX_REMEMBERED:
            self._resolved.clear()
        self._resolved[hashed] = result
        return result

    async def _resolve_pg(self, hashed: str) -> tuple[int, int, int] | None:
        """The token's look-up, from the next batch sent to PostgreSQL.

        Requests that arrive while a batch is out wait for the one after it:
        every request's answer comes from a query sent after it arrived, so
        a commit made before the request is always seen (a rotated token is
        404 on its next request), and a busy worker sends one query per
        round trip instead of one per request."""
        answer: asyncio.Future[tuple[int, int, int] | None] = (
            asyncio.get_running_loop().create_future())
        waiting = self._pg_waiting.get(hashed)
        if waiting is None:
            self._pg_waiting[hashed] = [answer]
        else:
            waiting.append(answer)
        if self._pg_batch is None:
            self._pg_batch = asyncio.ensure_future(self._pg_batches())
        return await answer

    async def _pg_batches(self) -> None:
        """Send the waiting look-ups as one query, again while more arrived meanwhile."""
        try:
            while self._pg_waiting:
                batch, self._pg_waiting = self._pg_waiting, {}
                try:
                    rows = await self._pg_query(list(batch))
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():  # else its request was cancelled
                                future.set_exception(exc)
                    continue
                for hashed, futures in batch.items():
                    found = rows.get(hashed)
                    for future in futures:
                        if not future.done():
                            future.set_result(found)
        finally:
            self._pg_batch = None

    async def _pg_query(self, hashes: list[str]) -> dict[str, tuple[int, int, int]]:
        """One prepared query on this worker's own autocommit connection (no
        pool checkout, no pre-ping): it sees the latest commit. Reconnects
        once when the server went away (a restart)."""
        self.queries += 1
        for attempt in (1, 2):
            try:
                if self._pg is None or self._pg.closed:
                    url = self.db.url.set(drivername="postgresql")
                    self._pg = await psycopg.AsyncConnection.connect(
                        url.render_as_string(hide_password=False), autocommit=True)
                    await self._pg.execute(f"PREPARE {_PG_STATEMENT} (text[]) AS "
                                           + _RESOLVE_SQL.format(p="ANY($1)"))
                return await _pg_lookup(self._pg.pgconn, hashes)
            except psycopg.OperationalError:
                if self._pg is not None:
                    await self._pg.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # -- feed bodies ----------------------------------------------------------------------
    async def lookup(self, token: str) -> CachedFeed | None:
        """The current feed of a token, from the cache when its version is current."""
        fresh = self._fresh.get(token)  # only ever filled when _shm is open
        if (fresh is not None and os.pread(self._shm, WAL_HEADER, 0) == self._shm_header
                and fresh.key[1] == self.today()):
            self._cache.move_to_end(fresh.link_id)
            return fresh
        if len(token) != 43 or not TOKEN_RE.fullmatch(token):
            return None
        hashed = self._hashes.get(token)
        if hashed is None:
            # = bridge.domain.secrets.token_hash, with the one-shot C HMAC (a third of the time).
            hashed = hmac.digest(self.secret, token.encode(), "sha256").hex()
            if len(self._hashes) >= MAX_REMEMBERED:
                self._hashes.clear()
            self._hashes[token] = hashed
        if self._sqlite_path:
            state = self._resolve_sqlite(hashed)
        else:
            state = await self._resolve_pg(hashed)
        if state is None:
            return None
        header = self._shm_header  # what the look-up was current under
        link_id, _company_id, version = state
        key = (version, self.today(), self._settings_key)
        cached = self._cache.get(link_id)
        if cached is not None and cached.key == key:
            self._cache.move_to_end(link_id)
        else:
            cached = await self._build(link_id, key)
        if self._shm >= 0 and header is self._shm_header and link_id in self._cache:
            if len(self._fresh) >= MAX_REMEMBERED:
                self._fresh.clear()
            self._fresh[token] = cached
        return cached

    async def _build(self, link_id: int, key: tuple[Any, ...]) -> CachedFeed:
        pending = self._building.get((link_id, key))
        if pending is not None:  # another request is assembling the same version
            return await asyncio.shield(pending)
        future: asyncio.Future[CachedFeed] = asyncio.get_running_loop().create_future()
        self._building[(link_id, key)] = future
        try:
            # In a thread: assembling a 20,000-event feed takes a while, and
            # other requests (304s above all) should not wait behind it.
            cached = self._cache.get(link_id)
            previous, since = None, None
            if cached is not None and cached.key[1:] == key[1:]:
                # Same window and settings: apply the changes since its version.
                previous, since = cached.feed, cached.key[0]
            body = await asyncio.to_thread(self._build_sync, link_id, key[1], previous, since)
            self.builds += 1
            cached = CachedFeed(key, link_id, body)
            self._store(link_id, cached)
            future.set_result(cached)
            return cached
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._building[(link_id, key)]

    def _build_sync(self, link_id: int, today: dt.date, previous: FeedBody | None,
                    since: int | None) -> FeedBody:
        fs = self.settings.feeds
        with self.db.sync_session() as s:
            return build_feed(s, link_id, today=today, days_back=fs.window_days_back,
                              days_ahead=fs.window_days_ahead, refresh_minutes=fs.refresh_minutes,
                              warn_bytes=fs.warn_bytes, previous=previous, since=since)

    def _store(self, link_id: int, cached: CachedFeed) -> None:
        old = self._cache.pop(link_id, None)
        if old is not None:
            self._cache_bytes -= old.size
        self._cache[link_id] = cached
        self._cache_bytes += cached.size
        while self._cache_bytes > self.max_cache_bytes and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            self._cache_bytes -= evicted.size
            self._fresh.clear()  # it may hold the evicted feed

    async def gzip_body(self, cached: CachedFeed) -> bytes:
        if cached._gzip is None:
            before = cached.size
            await asyncio.to_thread(cached.gzip_body)
            if any(c is cached for c in self._cache.values()):
                self._cache_bytes += cached.size - before
        return cached.gzip_body()

    async def close(self) -> None:
        if self._shm >= 0:
            os.close(self._shm)
            self._shm = -1
        self._fresh.clear()
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pg_batch is not None:
            await asyncio.gather(self._pg_batch, return_exceptions=True)
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
