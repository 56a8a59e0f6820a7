"""The change feed through the API, on SQLite and PostgreSQL: entries a
booking system can act on, paging by cursor, long polling, retention, and
bad input refused with problem responses."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import update

from bridge.app import create_app
from bridge.changes import service
from bridge.db.engine import Database
from bridge.db.models import ChangeEntry
from tests.conftest import ROOT, Tenant, make_settings

CHANGES = "/api/v1/changes"


async def get_json(client: Any, tenant: Tenant, path: str, **params: Any) -> Any:
    resp = await client.get(path, params=params, headers=tenant.headers)
    return resp.status, await resp.json()


async def make_staff(client: Any, tenant: Tenant, email: str = "ann@acme.test") -> int:
    resp = await client.post("/api/v1/staff", json={"email": email, "name": "Ann"},
                             headers=tenant.headers)
    assert resp.status == 201
    return int((await resp.json())["id"])


async def make_appointment(client: Any, tenant: Tenant, staff_id: int, hour: int = 9) -> dict[str, Any]:
    resp = await client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": staff_id, "start": f"2026-12-01T{hour:02d}:00:00+01:00",
        "end": f"2026-12-01T{hour:02d}:45:00+01:00", "customer_name": "Léa Martin"})
    assert resp.status == 201
    return dict(await resp.json())


async def test_feed_tells_what_happened_to_a_booking(client: Any, tenant: Tenant) -> None:
    staff_id = await make_staff(client, tenant)
    appt = await make_appointment(client, tenant, staff_id)
    resp = await client.patch(f"/api/v1/appointments/{appt['id']}", headers=tenant.headers,
                              json={"start": "2026-12-01T11:00:00+01:00",
                                    "end": "2026-12-01T11:45:00+01:00"})
    assert resp.status == 200
    resp = await client.patch(f"/api/v1/appointments/{appt['id']}", headers=tenant.headers,
                              json={"notes": "bring X-rays"})
    resp = await client.post(f"/api/v1/appointments/{appt['id']}/cancel", headers=tenant.headers)
    assert resp.status == 200

    status, page = await get_json(client, tenant, CHANGES)
    assert status == 200
    types = [e["type"] for e in page["items"]]
    assert types == ["company.created", "api_key.created", "staff.created", "appointment.created",
                     "appointment.rescheduled", "appointment.updated", "appointment.cancelled"]
    assert [e["seq"] for e in page["items"]] == list(range(1, 8))
    assert page["has_more"] is False
    moved = page["items"][4]
    assert moved["source"] == "api" and moved["entity_id"] == appt["id"]
    assert moved["staff_id"] == staff_id
    assert moved["data"]["before"]["start"] == "2026-12-01T09:00:00+01:00"
    assert moved["data"]["after"]["start"] == "2026-12-01T11:00:00+01:00"
    assert moved["data"]["after"]["end"] == "2026-12-01T11:45:00+01:00"
    assert page["items"][5]["data"]["fields"] == ["notes"]
    assert page["items"][6]["data"]["after"]["status"] == "cancelled"

    # Nothing new after the last cursor.
    status, again = await get_json(client, tenant, CHANGES, after=page["next_cursor"])
    assert status == 200 and again["items"] == [] and again["next_cursor"] == page["next_cursor"]


async def test_paging_by_cursor_sees_every_entry_once(client: Any, tenant: Tenant) -> None:
    staff_id = await make_staff(client, tenant)
    for hour in range(8, 18):
        await make_appointment(client, tenant, staff_id, hour)
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"after": cursor} if cursor else {})
        status, page = await get_json(client, tenant, CHANGES, **params)
        assert status == 200
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == list(range(1, 14))
    # Each entry's own cursor resumes right after it.
    status, page = await get_json(client, tenant, CHANGES, limit=2)
    status, rest = await get_json(client, tenant, CHANGES, after=page["items"][0]["cursor"], limit=1)
    assert rest["items"][0]["seq"] == 2


async def test_companies_see_only_their_own_changes(client: Any, tenant: Tenant,
                                                    other_tenant: Tenant) -> None:
    await make_staff(client, tenant)
    _, mine = await get_json(client, tenant, CHANGES)
    _, theirs = await get_json(client, other_tenant, CHANGES)
    assert "staff.created" in [e["type"] for e in mine["items"]]
    assert [e["type"] for e in theirs["items"]] == ["company.created", "api_key.created"]
    # A cursor of one company is refused for another, even with the same seq.
    status, problem = await get_json(client, other_tenant, CHANGES, after=mine["items"][1]["cursor"])
    assert status == 400
    assert problem["field"] == "after"
    assert "cursor" in problem["detail"]


async def test_bad_parameters_are_problems(client: Any, tenant: Tenant) -> None:
    _, page = await get_json(client, tenant, CHANGES)
    cursor = page["next_cursor"]
    seq, mac = cursor.split(".")
    for params, status in [
        ({"after": "12"}, 400),
        ({"after": "abc.def"}, 400),
        ({"after": f"{int(seq) + 1}.{mac}"}, 400),
        ({"after": f"-1.{mac}"}, 400),
        ({"after": ""}, 422),
        ({"limit": "-1"}, 422),
        ({"limit": "0"}, 422),
        ({"limit": "1001"}, 422),
        ({"limit": "ten"}, 422),
        ({"wait": "-5"}, 422),
        ({"wait": "31"}, 422),
        ({"since": "yesterday"}, 422),
    ]:
        resp = await client.get(CHANGES, params=params, headers=tenant.headers)
        assert resp.status == status, params
        assert resp.content_type == "application/problem+json"
    assert (await client.get(CHANGES)).status == 401


async def test_cursor_older_than_retention_gets_410(client: Any, tenant: Tenant,
                                                    db: Database) -> None:
    staff_id = await make_staff(client, tenant)
    _, page = await get_json(client, tenant, CHANGES)
    old_cursor = page["items"][0]["cursor"]  # after seq 1
    await make_appointment(client, tenant, staff_id)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)
    with db.sync_session(write=True) as s:
        s.execute(update(ChangeEntry).where(ChangeEntry.company_id == tenant.company_id,
                                            ChangeEntry.seq <= 3).values(created_at=long_ago))
        assert service.purge(s, 90)["changes"] == 3
    status, problem = await get_json(client, tenant, CHANGES, after=old_cursor)
    assert status == 410
    assert "resynchronise" in problem["detail"]
    # The cursor just before the oldest kept entry still works; so does starting over.
    status, page = await get_json(client, tenant, CHANGES, after=page["items"][2]["cursor"])
    assert status == 200 and [e["type"] for e in page["items"]] == ["appointment.created"]
    status, page = await get_json(client, tenant, CHANGES)
    assert status == 200 and [e["seq"] for e in page["items"]] == [4]


async def test_long_poll_answers_when_a_change_arrives(client: Any, tenant: Tenant) -> None:
    _, page = await get_json(client, tenant, CHANGES)
    start = time.monotonic()
    poll = asyncio.create_task(get_json(client, tenant, CHANGES, after=page["next_cursor"], wait=10))
    await asyncio.sleep(0.3)
    assert not poll.done()
    await make_staff(client, tenant)
    status, got = await asyncio.wait_for(poll, 5)
    assert status == 200
    assert [e["type"] for e in got["items"]] == ["staff.created"]
    assert time.monotonic() - start < 3


async def test_long_poll_times_out_empty(client: Any, tenant: Tenant) -> None:
    _, page = await get_json(client, tenant, CHANGES)
    start = time.monotonic()
    status, got = await get_json(client, tenant, CHANGES, after=page["next_cursor"], wait=1)
    assert status == 200 and got["items"] == [] and got["next_cursor"] == page["next_cursor"]
    assert 0.9 < time.monotonic() - start < 3


async def test_long_poll_sees_a_write_from_another_process(
        aiohttp_client: Any, db_url: str, tmp_path: Path, tenant: Tenant) -> None:
    # On PostgreSQL the poll is 10 s, so only the NOTIFY sent at commit can
    # answer this in time; SQLite (no NOTIFY) relies on a 300 ms poll.
    poll_ms = 300 if db_url.startswith("sqlite") else 10_000
    settings = make_settings(db_url, tmp_path, changes={"poll_ms": poll_ms},
                             webhooks={"worker": False})
    client = await aiohttp_client(create_app(settings))
    _, page = await get_json(client, tenant, CHANGES)
    await asyncio.sleep(0.2)  # the listener is connected
    poll = asyncio.create_task(get_json(client, tenant, CHANGES, after=page["next_cursor"], wait=20))
    # Another calbridge process (the CLI) adds a staff member.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "staff", "add", "--company", tenant.slug,
        "--email", "far@acme.test", "--name", "Far", cwd=ROOT,
        env={**os.environ, "CALBRIDGE_DATABASE_URL": settings.database.url,
             "CALBRIDGE_SECURITY_SECRET_KEY": settings.security.secret_key},
        stdout=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0
    committed = time.monotonic()
    status, got = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - committed < 1.5
    assert status == 200
    assert [(e["type"], e["actor"]) for e in got["items"]] == [("staff.created", "cli")]


async def test_event_types_are_listed(client: Any, tenant: Tenant) -> None:
    status, body = await get_json(client, tenant, "/api/v1/changes/event-types")
    assert status == 200
    types = {t["type"] for t in body["items"]}
    assert {"appointment.rescheduled", "blocked_time.created", "feed.rotated",
            "webhook_endpoint.disabled"} <= types




def test_every_logged_type_is_in_the_catalogue() -> None:
    """A webhook filter can name every type the code writes (and the
    event-types listing documents them)."""
    import re

    written = set()
    for path in (ROOT / "bridge").rglob("*.py"):
        text = path.read_text()
        written |= set(re.findall(r'log_change\(\s*[^,]+,\s*[^,]+,\s*"([a-z_]+\.[a-z_]+)"', text))
        if "log_change" in text:  # types chosen before the call
            written |= set(re.findall(r'kind = "([a-z_]+\.[a-z_]+)"', text))
    assert len(written) > 20
    assert written - set(service.EVENT_TYPES) == set()


async def test_stopping_the_server_ends_long_polls(aiohttp_client: Any, settings: Any,
                                                   tenant: Tenant) -> None:
    client = await aiohttp_client(create_app(settings))
    _, page = await get_json(client, tenant, CHANGES)
    poll = asyncio.create_task(get_json(client, tenant, CHANGES, after=page["next_cursor"], wait=25))
    await asyncio.sleep(0.3)
    start = time.monotonic()
    await client.server.close()
    assert time.monotonic() - start < 3
    status, got = await asyncio.wait_for(poll, 3)
    assert status == 200 and got["items"] == []
    await client.close()
