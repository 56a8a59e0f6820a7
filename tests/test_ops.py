"""Operations: /healthz checks the database, /metrics speaks Prometheus, and
the access log carries no secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bridge.app import create_app
from tests.conftest import Tenant, make_settings


async def test_healthz_reports_the_database(client: Any) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert (body["status"], body["database"]) == ("ok", "ok")


async def test_healthz_fails_when_the_database_is_unreachable(aiohttp_client: Any, tmp_path: Any) -> None:
    settings = make_settings("postgresql://nobody@127.0.0.1:1/none", tmp_path)
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["status"] == "fail"


async def test_metrics_count_requests_by_route(client: Any, tenant: Tenant) -> None:
    await client.get("/api/v1/staff", headers=tenant.headers)
    await client.get("/api/v1/staff/12345", headers=tenant.headers)
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.content_type == "text/plain"
    assert 'calbridge_http_requests_total{method="GET",route="/api/v1/staff",status="200"} 1' in text
    assert 'route="/api/v1/staff/{staff_id}",status="404"} 1' in text
    assert "calbridge_http_request_duration_seconds_bucket" in text


async def test_access_log_has_no_secrets(client: Any, tenant: Tenant,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="calbridge.access")
    secret_token = "s3cr3tT0kenValue_abcdefghijklmnopqrstuv"
    await client.get("/api/v1/staff", headers={**tenant.headers, "Cookie": "session=abc"})
    await client.get(f"/feeds/{secret_token}.ics")
    await client.get("/api/v1/staff?password=hunter2", headers=tenant.headers)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert '"path": "/api/v1/staff"' in text
    assert "/feeds/[redacted]" in text
    for secret in (tenant.api_key, secret_token, "hunter2", "Bearer", "session=abc"):
        assert secret not in text


async def test_access_log_is_written_in_batches(aiohttp_client: Any, db_url: str, tmp_path: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="calbridge.access")
    settings = make_settings(db_url, tmp_path).replace(server={"access_log_flush_seconds": 60.0})
    client = await aiohttp_client(create_app(settings))
    for _ in range(3):
        await client.get("/healthz")
    assert not [r for r in caplog.records if r.name == "calbridge.access"]
    await client.close()  # shutdown flushes what is pending, as one record
    records = [r.getMessage() for r in caplog.records if r.name == "calbridge.access"]
    assert len(records) == 1
    lines = [json.loads(line) for line in records[0].split("\n")]
    assert [(line["route"], line["status"]) for line in lines] == [("/healthz", 200)] * 3
