"""Delivery to a real receiver on 127.0.0.1 that verifies every signature
with the Standard Webhooks reference library: in order, complete, at least
once, through receiver failures, outages, a server restart, several
workers, and an endpoint disabled after failing too long."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.app import create_app
from tests.conftest import Tenant
from tests.webhooks.conftest import Receiver, fast_settings

HOOKS = "/api/v1/webhooks"


async def add_endpoint(client: Any, tenant: Tenant, receiver: Receiver,
                       event_types: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": receiver.url}
    if event_types:
        body["event_types"] = event_types
    resp = await client.post(HOOKS, json=body, headers=tenant.headers)
    assert resp.status == 201, await resp.text()
    ep = dict(await resp.json())
    receiver.secrets.append(ep["secret"])
    return ep


async def add_staff(client: Any, tenant: Tenant, n: int) -> int:
    resp = await client.post("/api/v1/staff", json={"email": f"s{n}@acme.test", "name": f"S {n}"},
                             headers=tenant.headers)
    assert resp.status == 201
    return int((await resp.json())["id"])


async def book(client: Any, tenant: Tenant, staff_id: int, day: int) -> dict[str, Any]:
    resp = await client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": staff_id, "start": f"2026-12-{day:02d}T09:00:00+01:00",
        "end": f"2026-12-{day:02d}T10:00:00+01:00", "customer_name": "Noah Brown"})
    assert resp.status == 201
    return dict(await resp.json())


async def deliveries_when(client: Any, tenant: Tenant, endpoint_id: int,
                          first: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The delivery log once its first entry satisfies `first` (5 s at most)."""
    items: list[dict[str, Any]] = []
    for _ in range(250):
        resp = await client.get(f"{HOOKS}/{endpoint_id}/deliveries", headers=tenant.headers)
        items = (await resp.json())["items"]
        if items and first(items[0]):
            break
        await asyncio.sleep(0.02)
    return items


async def settled(client: Any, tenant: Tenant, endpoint_id: int) -> None:
    """Wait until the worker has recorded everything it sent (5 s at most)."""
    for _ in range(250):
        resp = await client.get(f"{HOOKS}/{endpoint_id}", headers=tenant.headers)
        if (await resp.json())["pending_deliveries"] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("deliveries still pending")


async def test_events_arrive_signed_in_order_with_before_and_after(
        client: Any, tenant: Tenant, receiver: Receiver) -> None:
    await add_endpoint(client, tenant, receiver, ["appointment.*"])
    staff_id = await add_staff(client, tenant, 1)
    appt = await book(client, tenant, staff_id, 1)
    resp = await client.patch(f"/api/v1/appointments/{appt['id']}", headers=tenant.headers,
                              json={"start": "2026-12-01T14:00:00+01:00",
                                    "end": "2026-12-01T15:00:00+01:00"})
    assert resp.status == 200
    await client.post(f"/api/v1/appointments/{appt['id']}/cancel", headers=tenant.headers)
    await receiver.wait_for(lambda: len(receiver.got) >= 3)
    assert receiver.types() == ["appointment.created", "appointment.rescheduled",
                                "appointment.cancelled"]
    assert receiver.bad_signatures == 0
    moved = receiver.got[1].payload
    assert moved["data"]["data"]["before"]["start"] == "2026-12-01T09:00:00+01:00"
    assert moved["data"]["data"]["after"]["start"] == "2026-12-01T14:00:00+01:00"
    assert moved["data"]["source"] == "api" and moved["data"]["entity_id"] == appt["id"]
    seqs = [r.seq for r in receiver.got]
    assert seqs == sorted(seqs)
    assert receiver.got[0].message_id == f"evt_{tenant.company_id}_{seqs[0]}"
    # Every request carries the three Standard Webhooks headers.
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= {
        k.lower() for k in receiver.got[0].headers}
    # The delivery log shows each as delivered at the first attempt.
    ep_id = (await (await client.get(HOOKS, headers=tenant.headers)).json())["items"][0]["id"]
    await settled(client, tenant, ep_id)
    resp = await client.get(f"{HOOKS}/{ep_id}/deliveries", headers=tenant.headers)
    log = (await resp.json())["items"]
    assert [(d["event_type"], d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
        ("appointment.created", "succeeded", 1, 200),
        ("appointment.rescheduled", "succeeded", 1, 200),
        ("appointment.cancelled", "succeeded", 1, 200)]


async def test_receiver_failures_are_retried_in_order(client: Any, tenant: Tenant,
                                                      receiver: Receiver) -> None:
    ep = await add_endpoint(client, tenant, receiver, ["staff.created"])
    receiver.status = 503
    for n in range(5):
        await add_staff(client, tenant, n)
    # Fails for a while: nothing delivered, the head is retried with backoff.
    await asyncio.sleep(0.5)
    assert receiver.got == []
    resp = await client.get(f"{HOOKS}/{ep['id']}/deliveries", headers=tenant.headers)
    head = (await resp.json())["items"][0]
    assert head["status"] == "pending" and head["attempts"] >= 2
    assert head["last_status_code"] == 503 and "503" in head["last_error"]
    resp = await client.get(f"{HOOKS}/{ep['id']}", headers=tenant.headers)
    assert (await resp.json())["failing_since"] is not None
    receiver.status = 200
    await receiver.wait_for(lambda: len(receiver.got) >= 5)
    assert [r.payload["data"]["data"]["after"]["email"] for r in receiver.got] == [
        f"s{n}@acme.test" for n in range(5)]
    await settled(client, tenant, ep["id"])
    resp = await client.get(f"{HOOKS}/{ep['id']}/deliveries/{head['id']}", headers=tenant.headers)
    detail = await resp.json()
    assert detail["status"] == "succeeded"
    assert [a["status_code"] for a in detail["attempt_log"]][-1] == 200
    assert all(a["status_code"] == 503 for a in detail["attempt_log"][:-1])
    resp = await client.get(f"{HOOKS}/{ep['id']}", headers=tenant.headers)
    assert (await resp.json())["failing_since"] is None


async def test_receiver_down_then_back_on_the_same_port(client: Any, tenant: Tenant,
                                                        receiver: Receiver) -> None:
    await add_endpoint(client, tenant, receiver, ["staff.*"])
    await receiver.stop()
    for n in range(4):
        await add_staff(client, tenant, n)
    await asyncio.sleep(0.4)
    await receiver.start()
    await receiver.wait_for(lambda: len(receiver.got) >= 4)
    assert [r.type for r in receiver.got] == ["staff.created"] * 4
    seqs = [r.seq for r in receiver.got]
    assert seqs == sorted(set(seqs))


async def test_deliveries_resume_after_a_server_restart(
        aiohttp_client: Any, db_url: str, tmp_path: Path, tenant: Tenant,
        receiver: Receiver) -> None:
    settings = fast_settings(db_url, tmp_path)
    first: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    await add_endpoint(first, tenant, receiver, ["staff.created"])
    receiver.status = 500
    for n in range(3):
        await add_staff(first, tenant, n)
    await asyncio.sleep(0.3)
    await first.close()  # the server stops (its worker gives its lease back)
    receiver.status = 200
    assert receiver.got == []
    second: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    await add_staff(second, tenant, 3)
    await receiver.wait_for(lambda: len(receiver.got) >= 4)
    assert [r.payload["data"]["data"]["after"]["email"] for r in receiver.got] == [
        f"s{n}@acme.test" for n in range(4)]


async def test_two_workers_deliver_each_event_once_in_order(
        aiohttp_client: Any, db_url: str, tmp_path: Path, tenant: Tenant,
        receiver: Receiver) -> None:
    settings = fast_settings(db_url, tmp_path)
    a: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    b: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    await add_endpoint(a, tenant, receiver, ["staff.created"])
    for n in range(20):
        await add_staff(a if n % 2 else b, tenant, n)
    await receiver.wait_for(lambda: len(receiver.got) >= 20)
    await asyncio.sleep(0.2)
    seqs = [r.seq for r in receiver.got]
    assert len(seqs) == 20 and seqs == sorted(set(seqs))


async def test_endpoint_failing_too_long_is_disabled_and_the_company_told(
        aiohttp_client: Any, db_url: str, tmp_path: Path, tenant: Tenant,
        receiver: Receiver) -> None:
    settings = fast_settings(db_url, tmp_path, webhooks={"disable_after_seconds": 0.3})
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    ep = await add_endpoint(client, tenant, receiver, ["staff.created"])
    receiver.status = 500
    await add_staff(client, tenant, 1)

    async def disabled() -> bool:
        resp = await client.get(f"{HOOKS}/{ep['id']}", headers=tenant.headers)
        return (await resp.json())["enabled"] is False

    for _ in range(200):
        if await disabled():
            break
        await asyncio.sleep(0.02)
    resp = await client.get(f"{HOOKS}/{ep['id']}", headers=tenant.headers)
    body = await resp.json()
    assert body["enabled"] is False and "HTTP 500" in body["disabled_reason"]
    assert body["pending_deliveries"] == 1
    resp = await client.get("/api/v1/changes", headers=tenant.headers)
    last = (await resp.json())["items"][-1]
    assert last["type"] == "webhook_endpoint.disabled"
    assert last["entity_id"] == ep["id"] and last["data"]["pending"] == 1
    # Re-enabled, it resumes where it stopped: nothing was lost.
    receiver.status = 200
    resp = await client.patch(f"{HOOKS}/{ep['id']}", json={"enabled": True}, headers=tenant.headers)
    assert resp.status == 200
    await receiver.wait_for(lambda: len(receiver.got) >= 1)
    assert receiver.got[0].payload["data"]["data"]["after"]["email"] == "s1@acme.test"


async def test_test_event_and_replay(client: Any, tenant: Tenant, receiver: Receiver) -> None:
    ep = await add_endpoint(client, tenant, receiver, ["staff.created"])
    resp = await client.post(f"{HOOKS}/{ep['id']}/test", headers=tenant.headers)
    assert resp.status == 202
    await receiver.wait_for(lambda: receiver.types() == ["webhook.test"])
    for n in range(3):
        await add_staff(client, tenant, n)
    await receiver.wait_for(lambda: len(receiver.got) >= 4)
    first_seq, last_seq = receiver.got[1].seq, receiver.got[3].seq
    assert first_seq is not None and last_seq is not None
    resp = await client.post(f"{HOOKS}/{ep['id']}/replay", headers=tenant.headers,
                             json={"from_seq": first_seq, "to_seq": last_seq})
    assert resp.status == 202 and (await resp.json())["queued"] == 3
    await receiver.wait_for(lambda: len(receiver.got) >= 7)
    assert [r.seq for r in receiver.got[4:]] == [r.seq for r in receiver.got[1:4]]
    # A replay keeps the message id, so a receiver can tell it has it already.
    assert [r.message_id for r in receiver.got[4:]] == [r.message_id for r in receiver.got[1:4]]
    resp = await client.get(f"{HOOKS}/{ep['id']}/deliveries", headers=tenant.headers)
    kinds = [d["kind"] for d in (await resp.json())["items"]]
    assert kinds == ["test", "event", "event", "event", "replay", "replay", "replay"]


async def test_a_disabled_endpoint_gets_no_test(client: Any, tenant: Tenant,
                                                receiver: Receiver) -> None:
    ep = await add_endpoint(client, tenant, receiver)
    await client.patch(f"{HOOKS}/{ep['id']}", json={"enabled": False}, headers=tenant.headers)
    resp = await client.post(f"{HOOKS}/{ep['id']}/test", headers=tenant.headers)
    assert resp.status == 409


async def test_rotation_signs_with_both_secrets(client: Any, tenant: Tenant,
                                                receiver: Receiver) -> None:
    ep = await add_endpoint(client, tenant, receiver, ["staff.created"])
    resp = await client.post(f"{HOOKS}/{ep['id']}/rotate-secret", headers=tenant.headers)
    new_secret = (await resp.json())["secret"]
    receiver.secrets = [new_secret]  # a receiver that switched at once
    await add_staff(client, tenant, 1)
    await receiver.wait_for(lambda: len(receiver.got) >= 1)
    signatures = receiver.got[0].headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    receiver.secrets = [ep["secret"]]  # and one that has not switched yet
    await add_staff(client, tenant, 2)
    await receiver.wait_for(lambda: len(receiver.got) >= 2)
    assert receiver.bad_signatures == 0


async def test_redirects_are_not_followed(client: Any, tenant: Tenant,
                                          receiver: Receiver) -> None:
    followed: list[str] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.query.get("moved"):
            followed.append(request.path_qs)
            return web.Response(text="ok")
        raise web.HTTPFound(location=f"{receiver.url}?moved=1")

    receiver.handler = redirect
    ep = await add_endpoint(client, tenant, receiver, ["staff.created"])
    await add_staff(client, tenant, 1)
    items = await deliveries_when(client, tenant, ep["id"], lambda d: d["attempts"] >= 1)
    assert items[0]["status"] == "pending" and items[0]["last_status_code"] == 302
    assert "redirect not followed" in items[0]["last_error"]
    assert followed == []


async def test_slow_receivers_time_out(aiohttp_client: Any, db_url: str, tmp_path: Path,
                                       tenant: Tenant, receiver: Receiver) -> None:
    settings = fast_settings(db_url, tmp_path, webhooks={"timeout_seconds": 1.0})
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))

    hanging = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        hanging.set()
        await asyncio.sleep(1.2)
        return web.Response(text="late")

    receiver.handler = slow
    ep = await add_endpoint(client, tenant, receiver, ["staff.created"])
    await add_staff(client, tenant, 1)
    await asyncio.wait_for(hanging.wait(), 5)
    # A delivery hanging on the receiver blocks no request of the API.
    start = asyncio.get_running_loop().time()
    await add_staff(client, tenant, 2)
    assert asyncio.get_running_loop().time() - start < 0.8  # the receiver hangs 1 s
    items = await deliveries_when(client, tenant, ep["id"], lambda d: d["attempts"] >= 1)
    assert "timed out" in items[0]["last_error"] and items[0]["status"] == "pending"


async def test_only_part_of_a_huge_answer_is_read(client: Any, tenant: Tenant,
                                                  receiver: Receiver) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(2000):  # 128 MiB if anyone read it all
                await resp.write(chunk)
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    receiver.handler = huge
    ep = await add_endpoint(client, tenant, receiver, ["staff.created"])
    await add_staff(client, tenant, 1)
    items = await deliveries_when(client, tenant, ep["id"], lambda d: d["status"] == "succeeded")
    assert items[0]["status"] == "succeeded"
    resp = await client.get(f"{HOOKS}/{ep['id']}/deliveries/{items[0]['id']}",
                            headers=tenant.headers)
    assert len((await resp.json())["attempt_log"][0]["response"]) == 500


async def test_flaky_receiver_still_gets_the_complete_sequence_in_order(
        client: Any, tenant: Tenant, receiver: Receiver) -> None:
    """At least once and complete: a receiver that fails every third request
    ends up with every event, first seen in sequence order."""
    calls = {"n": 0}

    async def flaky(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            return web.Response(status=500, text="hiccup")
        return await receiver.accept(request)

    receiver.handler = flaky
    await add_endpoint(client, tenant, receiver, ["staff.created"])
    for n in range(15):
        await add_staff(client, tenant, n)
    resp = await client.get("/api/v1/changes", headers=tenant.headers)
    expected = [e["seq"] for e in (await resp.json())["items"] if e["type"] == "staff.created"]
    await receiver.wait_for(lambda: {r.seq for r in receiver.got} >= set(expected), 15)
    first_seen = list(dict.fromkeys(r.seq for r in receiver.got))
    assert first_seen == expected
    assert calls["n"] > len(expected)  # some were retried


async def test_a_crashed_workers_lease_expires_and_another_resumes(
        aiohttp_client: Any, db_url: str, tmp_path: Path, tenant: Tenant, db: Any,
        receiver: Receiver) -> None:
    from bridge.notify import webhooks_service as svc

    settings = fast_settings(db_url, tmp_path, webhooks={"worker": False})
    api: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    await add_endpoint(api, tenant, receiver, ["staff.created"])
    await add_staff(api, tenant, 1)
    # A worker claims the endpoint and dies before sending (no release).
    with db.sync_session(write=True) as s:
        jobs = svc.claim(s, "crashed-worker", 8, 0.5, settings.secret())
    assert len(jobs) == 1
    await aiohttp_client(create_app(fast_settings(db_url, tmp_path)))  # a live worker
    await asyncio.sleep(0.3)
    assert receiver.got == []  # the lease still holds
    await receiver.wait_for(lambda: len(receiver.got) == 1, 5)
    assert receiver.got[0].payload["data"]["data"]["after"]["email"] == "s1@acme.test"
