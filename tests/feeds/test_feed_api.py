"""`/api/v1/feeds`: create, list, rotate and revoke feed links, on SQLite and PostgreSQL."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bridge.db.models import ChangeEntry, FeedLink
from tests.conftest import Tenant
from tests.feeds.conftest import Salon, run


async def post(client: TestClient[Any, Any], path: str, tenant: Tenant,
               body: dict[str, Any] | None = None) -> tuple[int, Any]:
    resp = await client.post(path, json=body or {}, headers=tenant.headers)
    return resp.status, await resp.json() if resp.status != 204 else None


def feed_path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


async def test_create_returns_every_kind_of_link(client: TestClient[Any, Any],
                                                 salon: Salon) -> None:
    status, link = await post(client, "/api/v1/feeds", salon.tenant,
                              {"staff_id": salon.anna, "privacy": "limited", "label": "phone"})
    assert status == 201
    assert (link["scope"], link["privacy"], link["label"], link["name"]) == (
        "staff", "limited", "phone", "Anna Müller")
    urls = link["urls"]
    token = urls["https"].rsplit("/", 1)[1].removesuffix(".ics")
    assert len(token) == 43 and token.isascii()
    assert urls["https"] == f"{salon.settings.base_url}/feeds/{token}.ics"
    assert urls["webcal"] == "webcal://" + urls["https"].split("://", 1)[1]
    google = urllib.parse.urlsplit(urls["google"])
    assert google.netloc == "calendar.google.com"
    assert urllib.parse.parse_qs(google.query)["cid"] == [urls["webcal"]]
    outlook = urllib.parse.urlsplit(urls["outlook"])
    assert outlook.path.endswith("/addfromweb")
    assert urllib.parse.parse_qs(outlook.query)["url"] == [urls["webcal"]]
    resp = await client.get(feed_path(urls["https"]))
    assert resp.status == 200
    # The database keeps no token and no URL.
    with salon.db.sync_session() as s:
        row = s.execute(select(FeedLink)).scalar_one()
        dump = " ".join(str(v) for v in row.__dict__.values())
        assert token not in dump
        entry = s.execute(select(ChangeEntry).where(ChangeEntry.type == "feed.created")).scalar_one()
        assert entry.entity_id == link["id"]
        assert token not in str(entry.data)


@pytest.mark.parametrize("body,field", [
    ({"staff_id": 999_999}, "staff_id"),
    ({"group_id": 999_999}, "group_id"),
    ({"scope": "everyone"}, "scope"),
    ({"staff_id": "1"}, "staff_id"),
    ({"scope": "company", "privacy": "secret"}, "privacy"),
    ({"scope": "company", "colour": "red"}, "colour"),
    ({}, "scope"),
])
async def test_bad_requests_create_nothing(client: TestClient[Any, Any], salon: Salon,
                                           body: dict[str, Any], field: str) -> None:
    status, problem = await post(client, "/api/v1/feeds", salon.tenant, body)
    assert status in (404, 422)
    assert problem["field"] == field
    with salon.db.sync_session() as s:
        assert s.execute(select(FeedLink)).first() is None


async def test_group_and_company_links(client: TestClient[Any, Any], salon: Salon) -> None:
    await run(salon.book, "a", salon.anna, 1, 10)
    status, group = await post(client, "/api/v1/feeds", salon.tenant, {"group_id": salon.group})
    assert status == 201 and group["scope"] == "group"
    status, company = await post(client, "/api/v1/feeds", salon.tenant,
                                 {"scope": "company", "privacy": "busy"})
    assert status == 201 and company["scope"] == "company"
    for link in (group, company):
        assert (await client.get(feed_path(link["urls"]["https"]))).status == 200


async def test_list_rotate_revoke(client: TestClient[Any, Any], salon: Salon) -> None:
    _, first = await post(client, "/api/v1/feeds", salon.tenant, {"staff_id": salon.anna})
    _, second = await post(client, "/api/v1/feeds", salon.tenant,
                           {"staff_id": salon.anna, "privacy": "busy", "label": "office"})
    resp = await client.get("/api/v1/feeds", headers=salon.tenant.headers)
    listed = (await resp.json())["items"]
    assert [item["id"] for item in listed] == [first["id"], second["id"]]
    assert listed[0]["urls"] == first["urls"]  # derived again, never stored

    status, rotated = await post(client, f"/api/v1/feeds/{first['id']}/rotate", salon.tenant)
    assert status == 200
    assert rotated["urls"]["https"] != first["urls"]["https"]
    assert rotated["rotated_at"] is not None
    assert (await client.get(feed_path(first["urls"]["https"]))).status == 404
    assert (await client.get(feed_path(rotated["urls"]["https"]))).status == 200

    status, revoked = await post(client, f"/api/v1/feeds/{second['id']}/revoke", salon.tenant)
    assert status == 200 and revoked["status"] == "revoked" and "urls" not in revoked
    assert (await client.get(feed_path(second["urls"]["https"]))).status == 404
    status, again = await post(client, f"/api/v1/feeds/{second['id']}/revoke", salon.tenant)
    assert status == 200 and again["revoked_at"] == revoked["revoked_at"]
    status, _ = await post(client, f"/api/v1/feeds/{second['id']}/rotate", salon.tenant)
    assert status == 409

    listed = (await (await client.get("/api/v1/feeds", headers=salon.tenant.headers)).json())
    assert [item["id"] for item in listed["items"]] == [first["id"]]
    resp = await client.get("/api/v1/feeds?include_revoked=true", headers=salon.tenant.headers)
    assert len((await resp.json())["items"]) == 2

    resp = await client.delete(f"/api/v1/feeds/{first['id']}", headers=salon.tenant.headers)
    assert resp.status == 204
    assert (await client.get(feed_path(rotated["urls"]["https"]))).status == 404
    with salon.db.sync_session() as s:
        types = [e.type for e in s.execute(select(ChangeEntry).where(
            ChangeEntry.entity == "feed").order_by(ChangeEntry.seq)).scalars()]
    assert types == ["feed.created", "feed.created", "feed.rotated", "feed.revoked",
                     "feed.revoked"]


async def test_another_company_sees_nothing(client: TestClient[Any, Any], salon: Salon,
                                            other_tenant: Tenant) -> None:
    _, link = await post(client, "/api/v1/feeds", salon.tenant, {"staff_id": salon.anna})
    status, _ = await post(client, "/api/v1/feeds", other_tenant, {"staff_id": salon.anna})
    assert status == 404
    for action in ("rotate", "revoke"):
        status, _ = await post(client, f"/api/v1/feeds/{link['id']}/{action}", other_tenant)
        assert status == 404
    resp = await client.get("/api/v1/feeds", headers=other_tenant.headers)
    assert (await resp.json())["items"] == []
    resp = await client.get(f"/api/v1/feeds/{link['id']}", headers=other_tenant.headers)
    assert resp.status == 404
    assert (await client.get(feed_path(link["urls"]["https"]))).status == 200


async def test_api_needs_a_key(client: TestClient[Any, Any], salon: Salon) -> None:
    resp = await client.post("/api/v1/feeds", json={"scope": "company"})
    assert resp.status == 401
