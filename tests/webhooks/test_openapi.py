"""The change-feed and webhook answers match the schemas the OpenAPI
document gives for them (every status they answered with is documented)."""

from __future__ import annotations

from typing import Any

import jsonschema

from tests.api.test_openapi import _schema_for
from tests.conftest import Tenant
from tests.webhooks.conftest import Receiver


async def test_change_and_webhook_responses_match_the_document(
        client: Any, tenant: Tenant, receiver: Receiver) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    seen: set[int] = set()

    async def call(method: str, path: str, template: str, **kwargs: Any) -> Any:
        headers = {**tenant.headers, **kwargs.pop("headers", {})}
        resp = await client.request(method, path, headers=headers, **kwargs)
        body = await resp.json(content_type=None) if resp.status != 204 else None
        schema = _schema_for(doc, method.lower(), template, resp.status)
        if schema is not None:
            jsonschema.validate(body, {**schema, "components": doc["components"]})
        seen.add(resp.status)
        return body

    hooks, one = "/api/v1/webhooks", "/api/v1/webhooks/{webhook_id}"
    ep = await call("POST", hooks, hooks, json={"url": receiver.url})
    await call("POST", hooks, hooks, json={"url": "gopher://x"})
    wid = ep["id"]
    receiver.secrets.append(ep["secret"])
    await call("GET", hooks, hooks)
    await call("GET", f"{hooks}/{wid}", one)
    await call("PATCH", f"{hooks}/{wid}", one, json={"description": "booking app"})
    await call("PATCH", f"{hooks}/{wid}", one, json={"description": "x"},
               headers={"If-Match": '"v1"'})
    await call("GET", f"{hooks}/{wid}/secret", one + "/secret")
    await call("POST", f"{hooks}/{wid}/rotate-secret", one + "/rotate-secret")
    test = await call("POST", f"{hooks}/{wid}/test", one + "/test")
    await receiver.wait_for(lambda: len(receiver.got) >= 1)
    await call("GET", f"{hooks}/{wid}/deliveries", one + "/deliveries")
    await call("GET", f"{hooks}/{wid}/deliveries/{test['id']}", one + "/deliveries/{delivery_id}")
    await call("POST", f"{hooks}/{wid}/replay", one + "/replay", json={"from_seq": 1, "to_seq": 2})
    page = await call("GET", "/api/v1/changes", "/api/v1/changes")
    await call("GET", "/api/v1/changes?after=1.x", "/api/v1/changes")
    await call("GET", f"/api/v1/changes?after={page['next_cursor']}&wait=1", "/api/v1/changes")
    await call("GET", "/api/v1/changes/event-types", "/api/v1/changes/event-types")
    await call("DELETE", f"{hooks}/{wid}", one)
    await call("GET", f"{hooks}/{wid}", one)
    assert seen >= {200, 201, 202, 204, 400, 404, 412, 422}
