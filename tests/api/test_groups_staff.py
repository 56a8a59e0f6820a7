"""Groups, staff and memberships through the API: success, validation,
preconditions and tenant isolation, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from typing import Any

from tests.conftest import Tenant, count_rows


async def post(client: Any, tenant: Tenant, path: str, body: Any) -> Any:
    resp = await client.post(path, json=body, headers=tenant.headers)
    return resp, await resp.json()


async def test_group_lifecycle(client: Any, tenant: Tenant) -> None:
    resp, group = await post(client, tenant, "/api/v1/groups", {"slug": "front", "name": "Front desk"})
    assert resp.status == 201
    assert resp.headers["ETag"] == '"v1"'
    assert resp.headers["Location"] == f"/api/v1/groups/{group['id']}"
    resp = await client.get(f"/api/v1/groups/{group['id']}", headers=tenant.headers)
    assert (await resp.json())["name"] == "Front desk"
    resp = await client.patch(f"/api/v1/groups/{group['id']}", json={"name": "Reception"},
                              headers={**tenant.headers, "If-Match": '"v1"'})
    assert resp.status == 200
    assert resp.headers["ETag"] == '"v2"'
    resp = await client.get("/api/v1/groups", headers=tenant.headers)
    assert [g["name"] for g in (await resp.json())["items"]] == ["Reception"]
    resp = await client.delete(f"/api/v1/groups/{group['id']}", headers=tenant.headers)
    assert resp.status == 204
    resp = await client.get(f"/api/v1/groups/{group['id']}", headers=tenant.headers)
    assert resp.status == 404


async def test_stale_if_match_on_group_changes_nothing(client: Any, tenant: Tenant) -> None:
    _, group = await post(client, tenant, "/api/v1/groups", {"slug": "a", "name": "A"})
    await client.patch(f"/api/v1/groups/{group['id']}", json={"name": "B"}, headers=tenant.headers)
    for method in ("patch", "delete"):
        resp = await getattr(client, method)(
            f"/api/v1/groups/{group['id']}", json={"name": "C"},
            headers={**tenant.headers, "If-Match": '"v1"'})
        assert resp.status == 412
        assert resp.content_type == "application/problem+json"
    resp = await client.get(f"/api/v1/groups/{group['id']}", headers=tenant.headers)
    assert (await resp.json())["name"] == "B"


async def test_group_validation_errors(client: Any, tenant: Tenant, db: Any) -> None:
    cases = [
        ({"slug": "Bad Slug", "name": "x"}, 422, "slug"),
        ({"slug": "ok", "name": ""}, 422, "name"),
        ({"slug": "ok", "name": "x", "colour": "red"}, 422, "colour"),
        ({"slug": "ok", "name": 5}, 422, "name"),
    ]
    for body, status, field in cases:
        resp, problem = await post(client, tenant, "/api/v1/groups", body)
        assert resp.status == status, body
        assert problem["field"] == field
        assert problem["detail"]
    await post(client, tenant, "/api/v1/groups", {"slug": "dup", "name": "x"})
    resp, problem = await post(client, tenant, "/api/v1/groups", {"slug": "dup", "name": "y"})
    assert resp.status == 409 and problem["field"] == "slug"
    assert count_rows(db, "groups") == 1


async def test_malformed_json_and_wrong_type(client: Any, tenant: Tenant, db: Any) -> None:
    resp = await client.post("/api/v1/staff", data=b"{not json",
                             headers={**tenant.headers, "Content-Type": "application/json"})
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["detail"]
    resp = await client.post("/api/v1/staff", data=b"[1,2]",
                             headers={**tenant.headers, "Content-Type": "application/json"})
    assert resp.status == 400
    resp = await client.post("/api/v1/staff", data=b"email=a",
                             headers={**tenant.headers, "Content-Type": "text/plain"})
    assert resp.status == 415
    assert count_rows(db, "staff") == 0


async def test_oversized_body_is_refused(client: Any, tenant: Tenant, db: Any) -> None:
    big = json.dumps({"email": "a@b.example", "name": "x" * 2_000_000}).encode()
    resp = await client.post("/api/v1/staff", data=io.BytesIO(big),
                             headers={**tenant.headers, "Content-Type": "application/json"})
    assert resp.status == 413
    assert resp.content_type == "application/problem+json"
    assert count_rows(db, "staff") == 0


async def test_staff_lifecycle_and_memberships(client: Any, tenant: Tenant) -> None:
    _, group = await post(client, tenant, "/api/v1/groups", {"slug": "g", "name": "G"})
    resp, anna = await post(client, tenant, "/api/v1/staff", {
        "email": "Anna@Example.com", "name": "Anna Müller", "timezone": "Europe/Berlin",
        "group_ids": [group["id"]]})
    assert resp.status == 201
    assert anna["email"] == "anna@example.com"
    assert anna["group_ids"] == [group["id"]]
    _, ben = await post(client, tenant, "/api/v1/staff", {"email": "ben@example.com", "name": "Ben"})
    assert ben["timezone"] == "Europe/Paris"  # the company's zone
    resp = await client.put(f"/api/v1/groups/{group['id']}/members/{ben['id']}", headers=tenant.headers)
    assert resp.status == 201
    resp = await client.put(f"/api/v1/groups/{group['id']}/members/{ben['id']}", headers=tenant.headers)
    assert resp.status == 204
    resp = await client.get(f"/api/v1/groups/{group['id']}/members", headers=tenant.headers)
    assert [m["name"] for m in (await resp.json())["items"]] == ["Anna Müller", "Ben"]
    resp = await client.get(f"/api/v1/staff?group_id={group['id']}", headers=tenant.headers)
    assert len((await resp.json())["items"]) == 2
    resp = await client.delete(f"/api/v1/groups/{group['id']}/members/{anna['id']}",
                               headers=tenant.headers)
    assert resp.status == 204
    resp = await client.patch(f"/api/v1/staff/{ben['id']}", json={"active": False},
                              headers={**tenant.headers, "If-Match": '"v1"'})
    assert resp.status == 200 and (await resp.json())["active"] is False
    resp = await client.get("/api/v1/staff?active=true", headers=tenant.headers)
    assert [m["id"] for m in (await resp.json())["items"]] == [anna["id"]]
    resp = await client.delete(f"/api/v1/staff/{anna['id']}", headers=tenant.headers)
    assert resp.status == 204


async def test_staff_validation(client: Any, tenant: Tenant, db: Any) -> None:
    cases = [
        ({"email": "not-an-email", "name": "x"}, "email"),
        ({"email": "a@example.com", "name": "x", "timezone": "Mars/Olympus"}, "timezone"),
        ({"email": "a@example.com", "name": "x", "active": "yes"}, "active"),
        ({"email": "a@example.com", "name": "x", "group_ids": [999]}, "group_id"),
        ({"email": "a@example.com"}, "name"),
        ({"email": "a@example.com", "name": "x", "role": "boss"}, "role"),
    ]
    for body, field in cases:
        resp, problem = await post(client, tenant, "/api/v1/staff", body)
        assert resp.status in (404, 422), body
        assert problem["field"] == field, body
    await post(client, tenant, "/api/v1/staff", {"email": "a@example.com", "name": "A"})
    resp, problem = await post(client, tenant, "/api/v1/staff", {"email": "A@example.com", "name": "B"})
    assert resp.status == 409 and problem["field"] == "email"
    assert count_rows(db, "staff") == 1


async def test_staff_with_appointments_cannot_be_deleted(client: Any, tenant: Tenant) -> None:
    _, anna = await post(client, tenant, "/api/v1/staff", {"email": "a@example.com", "name": "A"})
    await post(client, tenant, "/api/v1/appointments", {
        "staff_id": anna["id"], "start": "2026-05-04T09:00:00+02:00", "end": "2026-05-04T10:00:00+02:00"})
    resp = await client.delete(f"/api/v1/staff/{anna['id']}", headers=tenant.headers)
    assert resp.status == 409
    assert "deactivate" in (await resp.json())["detail"]


async def test_staff_stale_if_match(client: Any, tenant: Tenant) -> None:
    _, anna = await post(client, tenant, "/api/v1/staff", {"email": "a@example.com", "name": "A"})
    await client.patch(f"/api/v1/staff/{anna['id']}", json={"name": "Anna"}, headers=tenant.headers)
    for method in ("patch", "delete"):
        resp = await getattr(client, method)(f"/api/v1/staff/{anna['id']}", json={"name": "X"},
                                             headers={**tenant.headers, "If-Match": '"v1"'})
        assert resp.status == 412
    resp = await client.get(f"/api/v1/staff/{anna['id']}", headers=tenant.headers)
    assert (await resp.json())["name"] == "Anna"
