"""Webhook endpoints through the API: create, list, read, update, disable,
delete, rotate the secret; bad input refused with 4xx problems and nothing
written; another company's endpoints are invisible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from bridge.app import create_app
from tests.conftest import Tenant, count_rows, make_settings
from tests.webhooks.conftest import Receiver

HOOKS = "/api/v1/webhooks"


async def create(client: Any, tenant: Tenant, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await client.post(HOOKS, json=body, headers=tenant.headers)
    return resp.status, await resp.json()


async def test_endpoint_lifecycle(client: Any, tenant: Tenant, receiver: Receiver) -> None:
    status, ep = await create(client, tenant, {"url": receiver.url, "description": "booking app",
                                               "event_types": ["appointment.*", "staff.created"]})
    assert status == 201
    assert ep["secret"].startswith("whsec_") and len(ep["secret"]) > 40
    assert ep["enabled"] is True and ep["event_types"] == ["appointment.*", "staff.created"]
    resp = await client.get(f"{HOOKS}/{ep['id']}", headers=tenant.headers)
    read = await resp.json()
    assert "secret" not in read and read["pending_deliveries"] == 0
    assert resp.headers["ETag"] == '"v1"'
    resp = await client.get(f"{HOOKS}/{ep['id']}/secret", headers=tenant.headers)
    assert (await resp.json())["secret"] == ep["secret"]

    resp = await client.get(HOOKS, headers=tenant.headers)
    assert [e["id"] for e in (await resp.json())["items"]] == [ep["id"]]

    resp = await client.patch(f"{HOOKS}/{ep['id']}", json={"enabled": False},
                              headers={**tenant.headers, "If-Match": '"v1"'})
    assert resp.status == 200
    body = await resp.json()
    assert body["enabled"] is False and body["disabled_reason"] == "disabled by api"
    resp = await client.patch(f"{HOOKS}/{ep['id']}", json={"enabled": True},
                              headers={**tenant.headers, "If-Match": '"v1"'})
    assert resp.status == 412

    resp = await client.post(f"{HOOKS}/{ep['id']}/rotate-secret", headers=tenant.headers)
    rotated = await resp.json()
    assert resp.status == 200 and rotated["secret"] != ep["secret"]

    resp = await client.delete(f"{HOOKS}/{ep['id']}", headers=tenant.headers)
    assert resp.status == 204
    assert (await client.get(f"{HOOKS}/{ep['id']}", headers=tenant.headers)).status == 404

    resp = await client.get("/api/v1/changes", headers=tenant.headers)
    types = [e["type"] for e in (await resp.json())["items"]]
    assert types[-4:] == ["webhook_endpoint.created", "webhook_endpoint.updated",
                          "webhook_endpoint.secret_rotated", "webhook_endpoint.deleted"]
    text = str(await (await client.get("/api/v1/changes", headers=tenant.headers)).json())
    assert ep["secret"] not in text and rotated["secret"] not in text


async def test_bad_input_is_refused_and_writes_nothing(client: Any, tenant: Tenant,
                                                       receiver: Receiver, db: Any) -> None:
    cases = [
        ({}, "url"),
        ({"url": ""}, "url"),
        ({"url": 42}, "url"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@example.com/hook"}, "url"),
        ({"url": "https://example.com/" + "x" * 2001}, "url"),
        ({"url": "https://example.com/hook", "event_types": ["appointment.moved"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["nope.*"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": []}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": "appointment.created"}, "event_types"),
        ({"url": "https://example.com/hook", "enabled": "yes"}, "enabled"),
        ({"url": "https://example.com/hook", "secret": "mine"}, "secret"),
    ]
    for body, field in cases:
        status, problem = await create(client, tenant, body)
        assert status == 422, body
        assert problem["field"] == field, body
    resp = await client.post(HOOKS, data="{", headers={**tenant.headers,
                                                       "Content-Type": "application/json"})
    assert resp.status == 400
    assert count_rows(db, "webhook_endpoints") == 0


async def test_internal_targets_are_refused_by_default(aiohttp_client: Any, db_url: str,
                                                       tmp_path: Path, tenant: Tenant) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(make_settings(db_url, tmp_path, webhooks={"worker": False})))
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/",
                "http://192.168.0.10/", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/hook", "http://[fe80::1]/", "http://100.64.0.1/",
                "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://2130706433/",
                "http://0x7f.1/", "http://127.1:8080/", "http://LOCALHOST./"):
        status, problem = await create(client, tenant, {"url": url})
        assert status == 422, url
        assert "private" in problem["detail"], url
    status, _ = await create(client, tenant, {"url": "https://hooks.example.com/calbridge"})
    assert status == 201


async def test_updates_are_validated_and_preconditioned(client: Any, tenant: Tenant,
                                                        receiver: Receiver) -> None:
    _, ep = await create(client, tenant, {"url": receiver.url})
    path = f"{HOOKS}/{ep['id']}"
    for body in ({"url": "gopher://x"}, {"event_types": ["x.y"]}, {"colour": "red"}):
        resp = await client.patch(path, json=body, headers=tenant.headers)
        assert resp.status == 422
    resp = await client.patch(path, json={"event_types": ["*"]},
                              headers={**tenant.headers, "If-Match": '"v9"'})
    assert resp.status == 412
    resp = await client.get(path, headers=tenant.headers)
    assert (await resp.json())["version"] == 1
    resp = await client.patch(path, json={"event_types": ["appointment.cancelled"]},
                              headers=tenant.headers)
    assert resp.status == 200 and (await resp.json())["version"] == 2


async def test_other_companies_cannot_see_endpoints(client: Any, tenant: Tenant,
                                                    other_tenant: Tenant,
                                                    receiver: Receiver) -> None:
    _, ep = await create(client, tenant, {"url": receiver.url})
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/secret"),
                           ("POST", "/rotate-secret"), ("POST", "/test"),
                           ("GET", "/deliveries"), ("GET", "/deliveries/1")):
        kwargs: dict[str, Any] = {"headers": other_tenant.headers}
        if method == "PATCH":
            kwargs["json"] = {"enabled": False}
        resp = await client.request(method, f"{HOOKS}/{ep['id']}{suffix}", **kwargs)
        assert resp.status == 404, (method, suffix)
    resp = await client.get(HOOKS, headers=other_tenant.headers)
    assert (await resp.json())["items"] == []
    resp = await client.post(f"{HOOKS}/{ep['id']}/replay", json={"from_seq": 1, "to_seq": 2},
                             headers=other_tenant.headers)
    assert resp.status == 404


async def test_replay_input_is_checked(client: Any, tenant: Tenant, receiver: Receiver) -> None:
    _, ep = await create(client, tenant, {"url": receiver.url})
    path = f"{HOOKS}/{ep['id']}/replay"
    for body, field in (({"from_seq": 0, "to_seq": 1}, "from_seq"),
                        ({"from_seq": "1", "to_seq": 2}, "from_seq"),
                        ({"from_seq": 3, "to_seq": 2}, "to_seq"),
                        ({"from_seq": 1, "to_seq": 999}, "to_seq"),
                        ({"from_seq": 1}, "to_seq"),
                        ({"from_seq": 1, "to_seq": 2, "x": 1}, "x")):
        resp = await client.post(path, json=body, headers=tenant.headers)
        assert resp.status == 422, body
        assert (await resp.json())["field"] == field
    for query in ("status=lost", "limit=-1", "after=x", "foo=1"):
        resp = await client.get(f"{HOOKS}/{ep['id']}/deliveries?{query}", headers=tenant.headers)
        assert resp.status == 422, query


async def test_endpoints_per_company_are_capped(client: Any, tenant: Tenant, db: Any,
                                                monkeypatch: Any) -> None:
    from bridge.notify import webhooks_service

    monkeypatch.setattr(webhooks_service, "MAX_ENDPOINTS", 2)
    for n in range(2):
        status, _ = await create(client, tenant, {"url": f"https://hooks.example.com/{n}"})
        assert status == 201
    status, problem = await create(client, tenant, {"url": "https://hooks.example.com/3"})
    assert status == 409 and "at most 2" in problem["detail"]
    assert count_rows(db, "webhook_endpoints") == 2
