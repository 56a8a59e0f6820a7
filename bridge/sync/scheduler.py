"""The poller: a background task of the server that reads due calendar
links and writes appointments out, then tells people about incidents.

Each tick claims due links in the database (so several workers or hosts
never poll one link twice), runs at most `[sync] concurrency` of them at
once, and records each result in its own transaction. Blocking work (the
`caldav` client, parsing and expanding large calendars) runs in threads.
`Syncer.run_once()` is one tick: tests and the CLI call it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from sqlalchemy.orm import Session

from bridge.config import Settings
from bridge.db.engine import Database
from bridge.db.models import utcnow
from bridge.domain.busy import ExpandOptions, expand, merge, parse_calendars
from bridge.errors import InvalidCalendarData
from bridge.sync import alerts, service, sources
from bridge.sync.service import Job, Notice, Outcome
from bridge.sync.sources import ReadResult, SourceError

log = logging.getLogger("calbridge.sync")


@dataclass
class JobReport:
    link_id: int
    outcome: Outcome
    notice: Notice | None
    pushed: int = 0


def compute_busy(texts: list[str], settings: Settings, timezone: str, start: dt.datetime,
                 end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Parse and expand a read's calendars into merged busy intervals."""
    calendars = []
    for text in texts:
        calendars += parse_calendars(text)
    opts = ExpandOptions(
        timezone=timezone, ignore_transparent=settings.sync.ignore_transparent,
        ignore_cancelled=settings.sync.ignore_cancelled,
        ignore_tentative=settings.sync.ignore_tentative,
        max_occurrences=settings.sync.max_occurrences)
    result = expand(calendars, start, end, opts)
    if result.truncated:
        log.warning("calendar expansion capped at %d intervals", opts.max_occurrences)
    return merge(result.intervals)


def compute_busy_items(items: dict[str, str], settings: Settings, timezone: str,
                       start: dt.datetime, end: dt.datetime
                       ) -> dict[str, list[tuple[dt.datetime, dt.datetime]]]:
    """Busy intervals per CalDAV object. An object that is not valid
    iCalendar is skipped (logged), not allowed to hide the others."""
    out: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for href, text in items.items():
        try:
            out[href] = compute_busy([text], settings, timezone, start, end)
        except InvalidCalendarData as exc:
            log.info("calendar object skipped: %s", exc.message[:200])
            out[href] = []
    return out


class Syncer:
    def __init__(self, settings: Settings, db: Database,
                 http: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self.db = db
        self._http = http
        self._own_http = http is None
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:64]
        self.semaphore = asyncio.Semaphore(settings.sync.concurrency)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    # -- one tick --------------------------------------------------------------
    async def run_once(self, now: dt.datetime | None = None) -> list[JobReport]:
        """Claim due links, read/write them concurrently, then record every
        result in one transaction (per 100), then send the notices."""
        jobs = await self.db.write(service.claim_due, self.settings, self.worker, now)
        if not jobs:
            return []
        done = await asyncio.gather(*(self._guarded(job) for job in jobs))
        reports: list[JobReport] = []
        for i in range(0, len(done), 100):
            chunk = done[i:i + 100]
            notices = await self.db.write(self._record_all, chunk)
            reports += [JobReport(job.link_id, outcome, notice, pushed)
                        for (job, outcome, pushed), notice in zip(chunk, notices, strict=True)]
        await asyncio.gather(*(alerts.send(self.settings, self.http, r.notice)
                               for r in reports if r.notice is not None))
        return reports

    def _record_all(self, s: Session, results: list[tuple[Job, Outcome, int]]
                    ) -> list[Notice | None]:
        return [service.record(s, self.settings, self.worker, job, outcome)
                for job, outcome, _ in results]

    async def _guarded(self, job: Job) -> tuple[Job, Outcome, int]:
        async with self.semaphore:
            try:
                return await self.run_job(job)
            except Exception:
                log.exception("calendar link %d: unexpected error", job.link_id)
                return job, Outcome(ok=False, error=SourceError("internal", "internal error")), 0

    async def run_job(self, job: Job) -> tuple[Job, Outcome, int]:
        """The network part of one job: read, then write appointments out."""
        outcome = Outcome(ok=True)
        pushed = 0
        if job.read:
            await self._read(job, outcome)
        if job.push and not (outcome.error and outcome.error.kind == "auth"):
            pushed = await self._push(job, outcome)
        return job, outcome, pushed

    async def _read(self, job: Job, outcome: Outcome) -> None:
        now = utcnow()
        start = now - dt.timedelta(days=self.settings.sync.window_days_back)
        end = now + dt.timedelta(days=self.settings.sync.window_days_ahead)
        cfg = self.settings.sync
        try:
            result: ReadResult
            if job.kind == "ics":
                result = await sources.read_ics(
                    self.http, job.url, etag=job.etag, last_modified=job.last_modified,
                    timeout_s=cfg.timeout_seconds, max_bytes=cfg.max_bytes,
                    allow_private=cfg.allow_private_addresses, conditional=not job.full)
            else:
                await sources.check_address(job.calendar_url, cfg.allow_private_addresses)
                result = await asyncio.to_thread(
                    sources.read_caldav, job.url, job.username, job.password, job.calendar_url,
                    sync_token=job.sync_token, ctag=job.ctag, start=start, end=end,
                    timeout=cfg.timeout_seconds, conditional=not job.full)
            outcome.etag, outcome.last_modified = result.etag, result.last_modified
            outcome.sync_token, outcome.ctag = result.sync_token, result.ctag
            if job.kind == "ics" and not result.changed:
                outcome.ctag = job.ctag  # 304: the content hash stays
            if result.changed and job.kind == "ics" and result.ctag == job.ctag and not job.full:
                result.changed = False  # same bytes as last time: nothing to recompute
            if result.changed and job.kind == "ics":
                try:
                    outcome.busy = await asyncio.to_thread(
                        compute_busy, result.texts, self.settings, job.timezone, start, end)
                except InvalidCalendarData as exc:
                    raise SourceError("invalid", f"the calendar is not valid iCalendar: "
                                                 f"{exc.message[:300]}") from None
                outcome.read_changed, outcome.window_end = True, end
            elif result.changed:
                outcome.busy_by_href = await asyncio.to_thread(
                    compute_busy_items, result.items, self.settings, job.timezone, start, end)
                outcome.deleted, outcome.incremental = result.deleted, result.incremental
                outcome.read_changed = True
                outcome.window_end = None if result.incremental else end
            outcome.read_ok = True
        except SourceError as exc:
            outcome.ok, outcome.error = False, exc
            log.info("calendar link %d: %s (%s)", job.link_id, exc.message, exc.kind)

    async def _push(self, job: Job, outcome: Outcome) -> int:
        plan = await self.db.read(service.plan_push, job.link_id)
        if plan is None:
            return 0
        done: list[sources.PushDone] = []
        error: SourceError | None = None
        if plan.ops:
            try:
                await sources.check_address(job.calendar_url,
                                            self.settings.sync.allow_private_addresses)
                done, error = await asyncio.to_thread(
                    sources.push_caldav, job.url, job.username, job.password, job.calendar_url,
                    plan.ops, self.settings.sync.timeout_seconds)
            except SourceError as exc:
                error = exc
        await self.db.write(service.record_push, job.link_id, plan, done, error)
        if error is not None:
            log.info("calendar link %d: write failed: %s", job.link_id, error.message)
            outcome.ok = False
            outcome.error = outcome.error or error
        return len(done)

    # -- the background task -----------------------------------------------------
    async def run_forever(self) -> None:
        tick = self.settings.sync.tick_seconds
        while True:
            await asyncio.sleep(tick)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("calendar poller tick failed; retrying")


async def syncer_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: one Syncer per app (discovery uses it); with
    `[sync] enabled`, its loop runs as a background task."""
    from bridge.keys import DB, SETTINGS, SYNCER

    syncer = Syncer(app[SETTINGS], app[DB])
    app[SYNCER] = syncer
    task = asyncio.create_task(syncer.run_forever()) if app[SETTINGS].sync.enabled else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await syncer.close()
