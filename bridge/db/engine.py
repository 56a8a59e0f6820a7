"""Engines and sessions for SQLite (WAL) and PostgreSQL.

`Database` hands out sessions for the two ways code runs here: async (the
aiohttp side) and sync (the Radicale plugin, the CLI). Units of work are
plain functions on a sync `Session`; async callers run them with
`await db.write(fn, ...)`, which uses `AsyncSession.run_sync`, so each piece
of logic exists once.

On SQLite a write transaction starts with BEGIN IMMEDIATE, so two writers
queue on the busy timeout instead of failing on a lock upgrade; readers use
a deferred BEGIN and never block (WAL).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from bridge.config import DatabaseSettings
from bridge.errors import ConfigError

P = ParamSpec("P")
T = TypeVar("T")


def normalise_url(url: str) -> tuple[URL, URL]:
    """(sync URL, async URL) for a user-facing database URL."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(f"[database] url: not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite"), parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return (
            parsed.set(drivername="postgresql+psycopg"),
            parsed.set(drivername="postgresql+psycopg"),
        )
    raise ConfigError(f"[database] url: unsupported database {backend!r} (sqlite or postgresql)")


def _sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """Both engines for one database URL; created once per process."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        sync_url, async_url = normalise_url(settings.url)
        self.url = sync_url
        self.is_sqlite = sync_url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": settings.echo}
        if self.is_sqlite:
            db_path = sync_url.database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            if db_path in (None, "", ":memory:"):
                raise ConfigError("[database] url: an in-memory SQLite database cannot be shared")
        else:
            kwargs.update(pool_size=settings.pool_size, max_overflow=settings.pool_size, pool_pre_ping=True)
        self.sync_engine: Engine = create_engine(sync_url, **kwargs)
        self.async_engine: AsyncEngine = create_async_engine(async_url, **kwargs)
        if self.is_sqlite:
            _sqlite_setup(self.sync_engine, settings.busy_timeout_ms)
            _sqlite_setup(self.async_engine.sync_engine, settings.busy_timeout_ms)
            write_opts = {"sqlite_begin": "IMMEDIATE"}
        else:
            write_opts = {}
        self._sync_read = sessionmaker(self.sync_engine, expire_on_commit=False)
        self._sync_write = sessionmaker(
            self.sync_engine.execution_options(**write_opts), expire_on_commit=False
        )
        self._sqlite_writer = threading.RLock()
        self._async_read = AsyncSession
        self._async_write_engine = self.async_engine.execution_options(**write_opts)

    # -- sync (Radicale plugin, CLI) ---------------------------------------
    @contextlib.contextmanager
    def sync_session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        if write and self.is_sqlite:
            # Threads of this process queue here, in order, instead of in
            # SQLite's busy handler, which sleeps up to 100 ms between tries
            # and lets a writer starve while others keep the lock busy.
            with self._sqlite_writer, self._sync_write() as session, session.begin():
                yield session
            return
        factory = self._sync_write if write else self._sync_read
        with factory() as session, session.begin():
            yield session

    def run(self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self.sync_session(write=True) as session:
            return fn(session, *args, **kwargs)

    # -- async (aiohttp side) ----------------------------------------------
    @contextlib.asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        engine = self._async_write_engine if write else self.async_engine
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            yield session

    async def write(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a unit of work in a write transaction."""
        async with self.session(write=True) as session:
            return await session.run_sync(lambda s: fn(s, *args, **kwargs))

    async def read(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a read-only unit of work."""
        async with self.session() as session:
            return await session.run_sync(lambda s: fn(s, *args, **kwargs))

    async def ping(self) -> None:
        async with self.async_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.async_engine.dispose()
        self.sync_engine.dispose()
