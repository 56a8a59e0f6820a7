"""Admin console benchmark (issue 7): what a console page costs.

On the demo data (5 staff, ~325 appointments, feed links, the change log of
loading it), with the whole server (`create_app`: middlewares, session
check, templates) on 127.0.0.1 and one signed-in client, measures the
median and p95 latency of each page, sequential requests; the reference,
in the same run, is a bare aiohttp handler returning the same page's bytes
from memory (the floor of this stack). Also the cost of one sign-in
(scrypt, by design ~50 ms). Pages are for people; the target is "feels
instant" (well under 100 ms), not throughput.

    .venv/bin/python bench/console_bench.py [--db postgresql] [--requests 100]

Prints a table and writes bench/results/console.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-" + "x" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pctl(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


async def timed(session: Any, url: str, n: int) -> tuple[list[float], bytes]:
    times, body = [], b""
    for _ in range(n):
        start = time.perf_counter()
        async with session.get(url, allow_redirects=False) as response:
            body = await response.read()
            assert response.status == 200, (url, response.status)
        times.append((time.perf_counter() - start) * 1000)
    return times, body


async def run(db_url: str, n: int) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web

    import bridge.web.demo  # noqa: F401  (the demo admin)
    from bridge.app import create_app
    from bridge.config import load_settings
    from bridge.db.engine import Database
    from bridge.db.migrate import upgrade
    from bridge.demo import load_demo

    port = free_port()
    settings = load_settings(None, {
        "CALBRIDGE_DATABASE_URL": db_url, "CALBRIDGE_SECURITY_SECRET_KEY": SECRET,
        "CALBRIDGE_SERVER_PORT": str(port), "CALBRIDGE_SERVER_ACCESS_LOG": "false",
        "CALBRIDGE_SYNC_ENABLED": "false"})
    upgrade(db_url)
    db = Database(settings.database)
    info = load_demo(db, settings)
    db.sync_engine.dispose()
    email, password = info["admin_console"].split("sign in as ")[1].rstrip(")").split(" / ")
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        sign_ins = []
        for _ in range(5):
            http.cookie_jar.clear()
            async with http.get(f"{base}/admin/login") as page:
                token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
            assert token
            start = time.perf_counter()
            async with http.post(f"{base}/admin/login", data={
                    "email": email, "password": password, "csrf": token.group(1)},
                    allow_redirects=False) as response:
                assert response.status == 303
            sign_ins.append((time.perf_counter() - start) * 1000)
        results["sign in"] = {"p50_ms": statistics.median(sign_ins)}
        staff_id = info["staff"][0]["id"]
        pages = {"staff list": "/admin/staff", "staff list, search": "/admin/staff?q=an",
                 "staff member": f"/admin/staff/{staff_id}", "groups": "/admin/groups",
                 "recent changes": "/admin/changes", "invite form": f"/admin/staff/{staff_id}/invite"}
        bodies: dict[str, bytes] = {}
        for name, path in pages.items():
            await timed(http, base + path, 3)  # warm up
            times, bodies[name] = await timed(http, base + path, n)
            results[name] = {"p50_ms": statistics.median(times), "p95_ms": pctl(times, 0.95),
                             "bytes": len(bodies[name])}
    await runner.cleanup()

    # Reference: a bare handler returning the staff member page's bytes.
    bare = web.Application()
    body = bodies["staff member"]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html")

    bare.router.add_get("/", handler)
    bare_runner = web.AppRunner(bare, access_log=None)
    await bare_runner.setup()
    bare_port = free_port()
    await web.TCPSite(bare_runner, "127.0.0.1", bare_port).start()
    async with aiohttp.ClientSession() as http:
        await timed(http, f"http://127.0.0.1:{bare_port}/", 3)
        times, _ = await timed(http, f"http://127.0.0.1:{bare_port}/", n)
    await bare_runner.cleanup()
    results["bare handler, same bytes"] = {"p50_ms": statistics.median(times),
                                           "p95_ms": pctl(times, 0.95), "bytes": len(body)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    if args.db == "postgresql":
        sys.path.insert(0, str(ROOT))
        from tests.conftest import create_pg_database, drop_pg_database

        url = create_pg_database("calbridge_bench_console")
        try:
            results = asyncio.run(run(url, args.requests))
        finally:
            drop_pg_database(url)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            results = asyncio.run(run(f"sqlite:///{tmp}/console.db", args.requests))
    floor = results["bare handler, same bytes"]["p50_ms"]
    print(f"admin console on {args.db}, demo data, {args.requests} sequential requests per page")
    print(f"{'page':<26}{'p50 ms':>9}{'p95 ms':>9}{'bytes':>8}{'x floor':>9}")
    for name, r in results.items():
        p95 = f"{r['p95_ms']:9.2f}" if "p95_ms" in r else f"{'':>9}"
        size = f"{r['bytes']:8d}" if "bytes" in r else f"{'':>8}"
        print(f"{name:<26}{r['p50_ms']:9.2f}{p95}{size}{r['p50_ms'] / floor:9.1f}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "console.json").write_text(json.dumps({"db": args.db, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
