"""API keys: missing, malformed, unknown keys are 401; keys are tenant-scoped."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant


async def test_requests_without_a_valid_key_are_refused(client: Any, tenant: Tenant) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer cbk_000000000000_nope"},
                    {"Authorization": "Bearer " + tenant.api_key[:-2] + "xx"}):
        resp = await client.get("/api/v1/staff", headers=headers)
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_openapi_needs_no_key(client: Any) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert (await resp.json())["openapi"] == "3.1.0"
