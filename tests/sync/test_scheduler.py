"""The poller: claims keep two workers from reading one link twice, the
background task polls on its own, intervals and leases are honoured."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from sqlalchemy import select, update

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.db.models import CalendarLink
from bridge.keys import DB
from bridge.sync import service
from bridge.sync.scheduler import Syncer
from tests.conftest import Tenant, make_settings
from tests.sync.conftest import SYNC, IcsSource
from tests.sync.test_ics_sync import link_ics, make_staff


async def test_two_workers_never_poll_the_same_link(app_client: Any, tenant: Tenant,
                                                    ics: IcsSource, sync_settings: Any) -> None:
    staff = await make_staff(app_client, tenant)
    for _ in range(6):
        await link_ics(app_client, tenant, staff, ics.url)
    workers = [Syncer(sync_settings, Database(sync_settings.database)) for _ in range(3)]
    try:
        reports = await asyncio.gather(*(w.run_once() for w in workers))
        polled = sorted(r.link_id for rs in reports for r in rs)
        assert len(polled) == 6 and len(set(polled)) == 6
        assert ics.requests == 6
        # Nothing is due until the interval has passed.
        assert [await w.run_once() for w in workers] == [[], [], []]
    finally:
        for w in workers:
            await w.close()
            await w.db.dispose()


async def test_a_claimed_link_is_left_alone_until_its_lease_expires(
        app_client: Any, tenant: Tenant, ics: IcsSource, sync_settings: Any) -> None:
    staff = await make_staff(app_client, tenant)
    await link_ics(app_client, tenant, staff, ics.url)
    db = app_client.app[DB]
    jobs = await db.write(service.claim_due, sync_settings, "crashed-worker")
    assert len(jobs) == 1
    assert await db.write(service.claim_due, sync_settings, "other") == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=sync_settings.sync.lease_seconds + 1)
    assert len(await db.write(service.claim_due, sync_settings, "other", later)) == 1
    # The crashed worker's late result is dropped: the link is no longer its own.
    outcome = service.Outcome(ok=True, read_ok=True)
    assert await db.write(service.record, sync_settings, "crashed-worker", jobs[0],
                          outcome) is None

    def claimed_by(s: Any) -> str:
        return str(s.execute(select(CalendarLink.claimed_by)).scalar_one())

    assert await db.read(claimed_by) == "other"


async def test_background_task_polls_due_links(aiohttp_client: Any, tenant: Tenant,
                                               ics: IcsSource, db_url: str,
                                               tmp_path: Any) -> None:
    settings = make_settings(db_url, tmp_path, sync={**SYNC, "enabled": True,
                                                     "tick_seconds": 0.05})
    client = await aiohttp_client(create_app(settings))
    staff = await make_staff(client, tenant)
    link = await link_ics(client, tenant, staff, ics.url)
    path = f"/api/v1/staff/{staff}/calendar-links/{link['id']}"
    for _ in range(100):
        data = await (await client.get(path, headers=tenant.headers)).json()
        if data["health"] == "ok":
            break
        await asyncio.sleep(0.05)
    assert data["health"] == "ok" and ics.requests == 1
    # "refresh" makes it due again at once.
    resp = await client.post(path + "/refresh", headers=tenant.headers)
    assert resp.status == 202
    for _ in range(100):
        if ics.requests == 2:
            break
        await asyncio.sleep(0.05)
    assert ics.requests == 2


async def test_next_poll_follows_the_interval_with_jitter(
        app_client: Any, tenant: Tenant, ics: IcsSource, sync_settings: Any) -> None:
    settings = sync_settings.replace(sync={"jitter": 0.2})
    staff = await make_staff(app_client, tenant)
    await link_ics(app_client, tenant, staff, ics.url)
    db = app_client.app[DB]
    gaps = []
    for _ in range(8):
        await db.write(lambda s: s.execute(update(CalendarLink).values(
            next_poll_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))))
        syncer = Syncer(settings, db)
        assert len(await syncer.run_once()) == 1
        await syncer.close()
        row = await db.read(lambda s: s.execute(select(
            CalendarLink.last_polled_at, CalendarLink.next_poll_at)).one())
        gaps.append((row[1] - row[0]).total_seconds())
    assert all(240 <= g <= 360 for g in gaps), gaps
    assert len(set(gaps)) > 1


async def test_concurrency_is_bounded(aiohttp_server: Any, app_client: Any, tenant: Tenant,
                                      sync_settings: Any) -> None:
    from aiohttp import web

    state = {"now": 0, "peak": 0}

    async def slow(request: web.Request) -> web.Response:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.1)
        state["now"] -= 1
        return web.Response(text="BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n",
                            content_type="text/calendar")

    app = web.Application()
    app.router.add_get("/{n}.ics", slow)
    server = await aiohttp_server(app)
    staff = await make_staff(app_client, tenant)
    for n in range(6):
        await link_ics(app_client, tenant, staff, str(server.make_url(f"/{n}.ics")))
    syncer = Syncer(sync_settings.replace(sync={"concurrency": 2}), app_client.app[DB])
    try:
        reports = await syncer.run_once()
    finally:
        await syncer.close()
    assert len(reports) == 6 and all(r.outcome.ok for r in reports)
    assert state["peak"] == 2
