"""`calbridge serve --workers 2`: two processes on one port that share
nothing but the database, so a write through one is read through the other."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from tests.server import run_cli, running_server


def request(url: str, method: str = "GET", body: Any = None, key: str = "") -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json",
        "Connection": "close"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_two_workers_share_only_the_database(db_url: str) -> None:
    run_cli(db_url, "db", "upgrade")
    run_cli(db_url, "company", "create", "acme")
    key = json.loads(run_cli(db_url, "apikey", "create", "--company", "acme", "--json").stdout)["key"]
    with running_server(db_url, workers=2) as base:
        # the second worker may still be starting when the first answers
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(request(f"{base}/healthz")["worker"])
        assert len(pids) == 2, "both workers should answer on the one port"
        staff = request(f"{base}/api/v1/staff", "POST", {"email": "a@example.com", "name": "A"}, key)
        seen: dict[int, list[str]] = {}
        for _ in range(40):
            worker = request(f"{base}/healthz")["worker"]
            names = [s["name"] for s in request(f"{base}/api/v1/staff", key=key)["items"]]
            seen.setdefault(worker, names)
        assert len(seen) == 2
        assert all(names == ["A"] for names in seen.values())
        request(f"{base}/api/v1/staff/{staff['id']}", "PATCH", {"name": "Anna"}, key)
        names = {request(f"{base}/api/v1/staff/{staff['id']}", key=key)["name"] for _ in range(20)}
        assert names == {"Anna"}
