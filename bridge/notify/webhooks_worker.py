"""The webhook delivery worker: a background task in every server process.

Safe with any number of workers and processes because all coordination is
in the database (`webhooks_service.claim` leases endpoints under row locks);
nothing here is needed by another process. Each tick it asks cheaply
whether any endpoint is due, claims up to `concurrency` of them, and sends
each endpoint's deliveries one at a time, in order (each waits for the
previous one's 2xx), recording up to `webhooks_service.BATCH` attempts in
one transaction; a crash before that records nothing, so those are sent
again (at least once). It wakes on the change signal of its own process
(and, on PostgreSQL, of every process) and polls every `[changes] poll_ms`
for the rest. It also purges the change log past retention once an hour.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiohttp import web

from bridge.changes.service import SIGNAL, purge
from bridge.config import Settings
from bridge.db.engine import Database
from bridge.db.models import utcnow
from bridge.keys import DB, SECRET, SETTINGS
from bridge.notify import webhooks_service as svc
from bridge.notify.webhooks import Sender, parse_networks, signed_headers

log = logging.getLogger("calbridge.webhooks")
T = TypeVar("T")
PURGE_EVERY = 3600.0


class DeliveryWorker:
    def __init__(self, db: Database, settings: Settings, secret: bytes) -> None:
        self.db, self.settings, self.secret = db, settings, secret
        self.cfg = settings.webhooks
        self.owner = f"w-{uuid.uuid4().hex[:12]}"
        # A lease outlives a few requests; a crashed worker's endpoints resume after it.
        # A batch stops sending while one more request could still end within it.
        self.lease = 2 * self.cfg.timeout_seconds + 10
        self.sender = Sender(timeout=self.cfg.timeout_seconds,
                             max_response_bytes=self.cfg.max_response_bytes,
                             allow=parse_networks(self.cfg.allow_networks))
        self.active: dict[int, asyncio.Task[None]] = {}
        self.held: set[int] = set()  # endpoints this worker holds the lease of
        self._last_purge = 0.0
        self._stopping = False
        self._writes: set[asyncio.Task[Any]] = set()

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """A unit of work that runs to its end even if the caller is cancelled
        (stopping must not leave a transaction half done, or a lease taken
        but not known); `stop` waits for those still running."""
        task: asyncio.Task[T] = asyncio.create_task(self.db.write(fn, *args))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    async def run(self) -> None:
        poll = self.settings.changes.poll_ms / 1000
        while not self._stopping:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly away: log and go on
                log.exception("webhook worker tick failed")
            await SIGNAL.wait(poll)

    async def tick(self) -> None:
        if time.monotonic() - self._last_purge > PURGE_EVERY:
            self._last_purge = time.monotonic()
            counts = await self._write(purge, self.settings.changes.retention_days)
            if any(counts.values()):
                log.info("purged %s", counts)
        free = self.cfg.concurrency - len(self.active)
        if free <= 0 or not await self.db.read(svc.has_work):
            return
        jobs = await self._write(svc.claim, self.owner, free, self.lease, self.secret)
        for job in jobs:
            self.held.add(job.endpoint_id)
            task = asyncio.create_task(self._deliver(job))
            self.active[job.endpoint_id] = task
            task.add_done_callback(functools.partial(self._finished, job.endpoint_id))

    def _finished(self, endpoint_id: int, _task: asyncio.Task[None]) -> None:
        self.active.pop(endpoint_id, None)

    async def _deliver(self, job: svc.Job | None) -> None:
        """Send an endpoint's deliveries in order while the lease holds: each
        waits for the previous one's 2xx; a batch is recorded in one go."""
        assert job is not None
        endpoint_id = job.endpoint_id
        while job is not None and not self._stopping:
            outcomes: list[svc.Outcome] = []
            leased_at = time.monotonic()
            for m in job.messages:
                if outcomes and (self._stopping or time.monotonic() - leased_at
                                 > self.lease - self.cfg.timeout_seconds - 5):
                    break
                body = m.payload.encode()
                started = utcnow()
                result = await self.sender.send(job.url, body,
                                                signed_headers(job.keys, m.message_id, body))
                outcomes.append(svc.Outcome(m.delivery_id, started, result.ok, result.status_code,
                                            result.error, result.duration_ms, result.excerpt))
                if not result.ok:
                    log.info("webhook %s to endpoint %s failed: %s", m.message_id,
                             endpoint_id, result.error)
                    break
            job = await self._write(svc.record, self.owner, endpoint_id, outcomes, self.cfg,
                                    self.secret, self.lease)
        if job is not None:
            await self._write(svc.release, self.owner, endpoint_id)
        self.held.discard(endpoint_id)

    async def stop(self) -> None:
        """Abandon the requests in flight (they will be sent again), let the
        database writes under way finish, and give the leases back."""
        self._stopping = True
        try:
            tasks = list(self.active.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*self._writes, return_exceptions=True)
            for eid in list(self.held):
                await self.db.write(svc.release, self.owner, eid)
            self.held.clear()
        finally:
            await self.sender.close()


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: start the worker with the app, stop it (leases given back) at shutdown."""
    settings = app[SETTINGS]
    if not settings.webhooks.worker:
        yield
        return
    worker = DeliveryWorker(app[DB], settings, app[SECRET])
    task = asyncio.create_task(worker.run())
    yield
    worker._stopping = True
    SIGNAL.notify()  # the loop ends after its current tick
    try:
        await asyncio.wait_for(task, 10)
    except TimeoutError:
        pass  # wait_for cancelled it; its writes are shielded
    await worker.stop()
