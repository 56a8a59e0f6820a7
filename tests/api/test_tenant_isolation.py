"""A key of company A gets 404 for everything of company B, on every route,
and nothing of B changes."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant


async def seed(client: Any, t: Tenant) -> dict[str, Any]:
    async def post(path: str, body: dict[str, Any]) -> Any:
        resp = await client.post(path, json=body, headers=t.headers)
        assert resp.status == 201, await resp.text()
        return await resp.json()

    group = await post("/api/v1/groups", {"slug": "team", "name": "Team"})
    staff = await post("/api/v1/staff", {"email": f"s@{t.slug}.example.com", "name": "S",
                                         "group_ids": [group["id"]]})
    appt = await post("/api/v1/appointments", {
        "staff_id": staff["id"], "external_id": "ext-1",
        "start": "2026-05-04T09:00:00+02:00", "end": "2026-05-04T10:00:00+02:00"})
    return {"group": group["id"], "staff": staff["id"], "appt": appt["id"], "etag": appt["etag"]}


ROUTES = [
    ("GET", "/api/v1/groups/{group}", None),
    ("PATCH", "/api/v1/groups/{group}", {"name": "hijacked"}),
    ("DELETE", "/api/v1/groups/{group}", None),
    ("GET", "/api/v1/groups/{group}/members", None),
    ("PUT", "/api/v1/groups/{group}/members/{staff}", None),
    ("PUT", "/api/v1/groups/{group}/members/{own_staff}", None),
    ("PUT", "/api/v1/groups/{own_group}/members/{staff}", None),
    ("DELETE", "/api/v1/groups/{group}/members/{staff}", None),
    ("GET", "/api/v1/staff/{staff}", None),
    ("PATCH", "/api/v1/staff/{staff}", {"name": "hijacked"}),
    ("DELETE", "/api/v1/staff/{staff}", None),
    ("GET", "/api/v1/staff?group_id={group}", None),
    ("GET", "/api/v1/appointments?staff_id={staff}", None),
    ("GET", "/api/v1/appointments?group_id={group}", None),
    ("GET", "/api/v1/appointments/{appt}", None),
    ("PATCH", "/api/v1/appointments/{appt}", {"notes": "hijacked"}),
    ("POST", "/api/v1/appointments/{appt}/cancel", None),
    ("GET", "/api/v1/appointments/by-external-id/ext-9", None),
    ("POST", "/api/v1/appointments", {"staff_id": "{staff}", "start": "2026-05-04T09:00:00Z",
                                      "end": "2026-05-04T10:00:00Z"}),
    ("PATCH", "/api/v1/appointments/{own_appt}", {"staff_id": "{staff}"}),
    ("POST", "/api/v1/staff", {"email": "x@a.example.com", "name": "X", "group_ids": ["{group}"]}),
]


def fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


async def test_a_key_sees_nothing_of_another_company(client: Any, tenant: Tenant,
                                                    other_tenant: Tenant) -> None:
    mine = await seed(client, tenant)
    theirs = await seed(client, other_tenant)
    ids = {**theirs, "own_staff": mine["staff"], "own_group": mine["group"], "own_appt": mine["appt"]}
    for method, path, body in ROUTES:
        url = path.format(**ids)
        resp = await client.request(method, url, json=fill(body, ids) if body else None,
                                    headers={**tenant.headers, "If-Match": f'"{theirs["etag"]}"'}
                                    if method != "GET" and "{appt}" in path else tenant.headers)
        assert resp.status == 404, (method, url, resp.status, await resp.text())
        problem = await resp.json()
        assert problem["status"] == 404
    # the other company's data is untouched
    for path in ("/api/v1/groups/{group}", "/api/v1/staff/{staff}", "/api/v1/appointments/{appt}"):
        resp = await client.get(path.format(**theirs), headers=other_tenant.headers)
        data = await resp.json()
        assert resp.status == 200
        assert data.get("name") != "hijacked" and data.get("notes", "") == ""
        assert data.get("status", "confirmed") == "confirmed"
    resp = await client.get(f"/api/v1/groups/{theirs['group']}/members", headers=other_tenant.headers)
    assert [m["id"] for m in (await resp.json())["items"]] == [theirs["staff"]]
    # lists never leak
    for path in ("/api/v1/groups", "/api/v1/staff", "/api/v1/appointments"):
        resp = await client.get(path, headers=tenant.headers)
        items = (await resp.json())["items"]
        assert {i["id"] for i in items}.isdisjoint({theirs["group"], theirs["staff"], theirs["appt"]}) \
            or (path == "/api/v1/groups" and all(i["id"] == mine["group"] for i in items))
