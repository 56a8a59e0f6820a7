"""Operations: /healthz checks the database, /metrics speaks Prometheus, and
the access log carries no secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bridge.accesslog import AccessLog, format_line
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


async def test_metrics_histogram_sums_every_status_of_a_route(client: Any, tenant: Tenant) -> None:
    for path in ("/api/v1/staff/1", "/api/v1/staff/2", "/api/v1/staff/3"):
        await client.get(path, headers=tenant.headers)
    await client.get("/api/v1/staff/4")  # 401: same route, another status
    text = await (await client.get("/metrics")).text()
    labels = 'method="GET",route="/api/v1/staff/{staff_id}"'
    assert f'calbridge_http_requests_total{{{labels},status="404"}} 3' in text
    assert f'calbridge_http_requests_total{{{labels},status="401"}} 1' in text
    buckets = [line for line in text.splitlines()
               if line.startswith(f"calbridge_http_request_duration_seconds_bucket{{{labels},")]
    counts = [int(line.rsplit(" ", 1)[1]) for line in buckets]
    assert counts == sorted(counts) and counts[-1] == 4  # cumulative, ending at +Inf
    assert 'le="+Inf"' in buckets[-1]
    assert f"calbridge_http_request_duration_seconds_count{{{labels}}} 4" in text
    total = next(line for line in text.splitlines()
                 if line.startswith(f"calbridge_http_request_duration_seconds_sum{{{labels}}}"))
    assert float(total.rsplit(" ", 1)[1]) > 0


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


def test_access_log_lines_of_a_repeated_request_keep_their_own_duration() -> None:
    """Lines come from a template remembered per request shape: the duration,
    and anything that differs, must still be each request's own."""
    log = AccessLog(60.0)
    for ms in (0.5, 12.25, 3000.0):
        log.add("GET", "/feeds/tok%en.ics", "/feeds/{token}.ics", 304, ms / 1000, "10.0.0.1")
    log.add("GET", "/feeds/tok%en.ics", "/feeds/{token}.ics", 200, 0.001, None)
    log.add("PO%sST", '/a/"%s', "unmatched", 405, 0.002, "::1")
    lines = [json.loads(line) for line in
             [format_line(*entry) for entry in log.pending]]
    assert [line["ms"] for line in lines] == [0.5, 12.25, 3000.0, 1.0, 2.0]
    assert {line["path"] for line in lines[:4]} == {"/feeds/[redacted]"}
    assert lines[3]["status"] == 200 and lines[3]["remote"] is None
    assert lines[4] == {"method": "PO%sST", "path": '/a/"%s', "route": "unmatched",
                        "status": 405, "ms": 2.0, "remote": "::1"}
