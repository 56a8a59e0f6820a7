"""The OpenAPI 3.1 document: valid, lists exactly the routes the server has,
and real responses match the schemas it documents."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from openapi_spec_validator import validate

from bridge.app import create_app
from bridge.config import Settings
from tests.conftest import Tenant

PARAM = re.compile(r"\{([^}:]+)(:[^}]*)?\}")


def router_operations(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(settings)
    ops = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or not path.startswith("/api/v1/") or route.method in ("HEAD", "OPTIONS"):
            continue
        if path == "/api/v1/openapi.json":
            continue
        ops.add((route.method.lower(), PARAM.sub(lambda m: "{" + m.group(1) + "}", path)))
    return ops


async def test_document_is_valid_and_matches_the_router(client: Any, settings: Settings) -> None:
    resp = await client.get("/api/v1/openapi.json")
    doc = await resp.json()
    validate(doc)
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == router_operations(settings)


def _schema_for(doc: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any] | None:
    op = doc["paths"][path][method]
    response = op["responses"].get(str(status))
    assert response is not None, f"{method} {path} answered {status}, which is not documented"
    content = response.get("content")
    if not content:
        return None
    media = next(iter(content.values()))
    return {"$ref": media["schema"]["$ref"]} if "$ref" in media["schema"] else media["schema"]


async def test_responses_match_their_documented_schemas(client: Any, tenant: Tenant) -> None:
    resp = await client.get("/api/v1/openapi.json")
    doc = await resp.json()
    seen: list[tuple[str, str, int]] = []

    async def call(method: str, path: str, template: str, **kwargs: Any) -> Any:
        resp = await client.request(method, path, headers=tenant.headers, **kwargs)
        body = await resp.json(content_type=None) if resp.status != 204 else None
        schema = _schema_for(doc, method.lower(), template, resp.status)
        if schema is not None:
            resolver_doc = {**schema, "components": doc["components"]}
            jsonschema.validate(body, resolver_doc)
        seen.append((method, template, resp.status))
        return body

    g = await call("POST", "/api/v1/groups", "/api/v1/groups", json={"slug": "a", "name": "A"})
    await call("GET", "/api/v1/groups", "/api/v1/groups")
    await call("GET", f"/api/v1/groups/{g['id']}", "/api/v1/groups/{group_id}")
    await call("PATCH", f"/api/v1/groups/{g['id']}", "/api/v1/groups/{group_id}", json={"name": "B"})
    await call("POST", "/api/v1/groups", "/api/v1/groups", json={"slug": "a", "name": "A"})  # 409
    s = await call("POST", "/api/v1/staff", "/api/v1/staff",
                   json={"email": "a@example.com", "name": "A"})
    await call("POST", "/api/v1/staff", "/api/v1/staff", json={"email": "bad"})  # 422
    await call("GET", "/api/v1/staff", "/api/v1/staff")
    await call("GET", f"/api/v1/staff/{s['id']}", "/api/v1/staff/{staff_id}")
    await call("PATCH", f"/api/v1/staff/{s['id']}", "/api/v1/staff/{staff_id}", json={"name": "Z"})
    await call("PUT", f"/api/v1/groups/{g['id']}/members/{s['id']}",
               "/api/v1/groups/{group_id}/members/{staff_id}")
    await call("GET", f"/api/v1/groups/{g['id']}/members", "/api/v1/groups/{group_id}/members")
    a = await call("POST", "/api/v1/appointments", "/api/v1/appointments", json={
        "staff_id": s["id"], "start": "2026-05-04T09:00:00Z", "end": "2026-05-04T10:00:00Z"})
    await call("GET", "/api/v1/appointments", "/api/v1/appointments")
    await call("GET", f"/api/v1/appointments/{a['id']}", "/api/v1/appointments/{appointment_id}")
    await call("PATCH", f"/api/v1/appointments/{a['id']}", "/api/v1/appointments/{appointment_id}",
               json={"notes": "n"}, )
    await call("PATCH", f"/api/v1/appointments/{a['id']}", "/api/v1/appointments/{appointment_id}",
               json={"notes": "m"}, )
    await call("PUT", "/api/v1/appointments/by-external-id/x1",
               "/api/v1/appointments/by-external-id/{external_id}",
               json={"staff_id": s["id"], "start": "2026-05-04T09:00:00Z", "end": "2026-05-04T10:00:00Z"})
    await call("GET", "/api/v1/appointments/by-external-id/x1",
               "/api/v1/appointments/by-external-id/{external_id}")
    await call("POST", f"/api/v1/appointments/{a['id']}/cancel",
               "/api/v1/appointments/{appointment_id}/cancel")
    await call("GET", "/api/v1/appointments/999", "/api/v1/appointments/{appointment_id}")  # 404
    await call("DELETE", f"/api/v1/groups/{g['id']}/members/{s['id']}",
               "/api/v1/groups/{group_id}/members/{staff_id}")
    await call("DELETE", f"/api/v1/groups/{g['id']}", "/api/v1/groups/{group_id}")
    assert {st for _, _, st in seen} >= {200, 201, 204, 404, 409, 422}
