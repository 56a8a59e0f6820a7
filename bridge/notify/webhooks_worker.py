"""The webhook delivery worker: a background task in every server process.

Safe with any number of workers and processes because all coordination is
in the database (`webhooks_service.claim` leases endpoints under row locks);
nothing here is needed by another process. Each tick it asks cheaply
whether any endpoint is due, claims up to `concurrency` of them, and sends
each endpoint's deliveries one at a time, in order, recording every attempt
before the next. It wakes on the change signal of its own process and
polls every `[changes] poll_ms` for the rest. It also purges the change log
past retention once an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from bridge.changes.service import SIGNAL, purge
from bridge.config import Settings
from bridge.db.engine import Database
from bridge.keys import DB, SECRET, SETTINGS
from bridge.notify import webhooks_service as svc
from bridge.notify.webhooks import Sender, parse_networks, signed_headers

log = logging.getLogger("calbridge.webhooks")
PURGE_EVERY = 3600.0


class DeliveryWorker:
    def __init__(self, db: Database, settings: Settings, secret: bytes) -> None:
        self.db, self.settings, self.secret = db, settings, secret
        self.cfg = settings.webhooks
        self.owner = f"w-{uuid.uuid4().hex[:12]}"
        # A lease outlives one request; a crashed worker's endpoints resume after it.
        self.lease = self.cfg.timeout_seconds + 5
        self.sender = Sender(timeout=self.cfg.timeout_seconds,
                             max_response_bytes=self.cfg.max_response_bytes,
                             allow=parse_networks(self.cfg.allow_networks))
        self.active: dict[int, asyncio.Task[None]] = {}
        self.held: set[int] = set()  # endpoints this worker holds the lease of
        self._last_purge = 0.0
        self._stopping = False

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
            counts = await self.db.write(purge, self.settings.changes.retention_days)
            if any(counts.values()):
                log.info("purged %s", counts)
        free = self.cfg.concurrency - len(self.active)
        if free <= 0 or not await self.db.read(svc.has_work):
            return
        jobs = await self.db.write(svc.claim, self.owner, free, self.lease, self.secret)
        for job in jobs:
            self.held.add(job.endpoint_id)
            task = asyncio.create_task(self._deliver(job))
            self.active[job.endpoint_id] = task
            task.add_done_callback(functools.partial(self._finished, job.endpoint_id))

    def _finished(self, endpoint_id: int, _task: asyncio.Task[None]) -> None:
        self.active.pop(endpoint_id, None)

    async def _deliver(self, job: svc.Job | None) -> None:
        """Send an endpoint's deliveries in order while the lease holds."""
        assert job is not None
        endpoint_id = job.endpoint_id
        while job is not None and not self._stopping:
            body = job.payload.encode()
            result = await self.sender.send(job.url, body,
                                            signed_headers(job.keys, job.message_id, body))
            if not result.ok:
                log.info("webhook %s to endpoint %s failed: %s", job.message_id,
                         job.endpoint_id, result.error)
            job = await self.db.write(
                svc.record, self.owner, job, result.ok, result.status_code, result.error,
                result.duration_ms, result.excerpt, self.cfg, self.secret, self.lease)
        if job is not None:
            await self.db.write(svc.release, self.owner, endpoint_id)
        self.held.discard(endpoint_id)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self.active.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for eid in list(self.held):
            await self.db.write(svc.release, self.owner, eid)
        self.held.clear()
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
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await worker.stop()
