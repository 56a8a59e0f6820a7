"""Change-feed and webhook benchmark (issue 5).

In one run, against a real `calbridge` worker process (SQLite by default,
`--db postgresql` for a fresh PostgreSQL database):

- Change-feed throughput: a company with `--entries` change-log entries
  (~0.8 kB of before/after data each, as a reschedule writes) read from the
  start through `GET /api/v1/changes` following `next_cursor`, with limit
  1000 and 100; entries/s, against the same pages read in-process by the
  unit of work (`read_changes`, no HTTP): the ratio is the HTTP cost.
- End-to-end latency from a CalDAV PUT (a staff member moving an
  appointment, through the Radicale plugin) to a signed webhook arriving at
  a receiver on 127.0.0.1, under a steady edit load (`--rate` PUTs/s (5) for
  `--seconds`): p50/p99 from sending the PUT, and from the PUT's answer;
  against the floor, a bare signed POST from this process to the same
  receiver. Every webhook is checked against its PUT (and its signature).
  Meanwhile a client long-polls the change feed (`wait=25`): the time from
  the PUT's answer to the feed returning the entry.
- Delivery throughput to one endpoint: `--burst` changes committed in one
  transaction, until the receiver has them all (in order, one request at a
  time, each attempt recorded): deliveries/s.

    .venv/bin/python bench/changes_bench.py [--db postgresql] [--entries 20000]
        [--rate 5] [--seconds 10] [--quick]

Prints a table and writes bench/results/changes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-" + "x" * 40
LOG = subprocess.DEVNULL if os.environ.get("BENCH_SERVER_LOG") != "1" else None
PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def env_for(db_url: str, port: int, poll_ms: int) -> dict[str, str]:
    return {
        "CALBRIDGE_DATABASE_URL": db_url, "CALBRIDGE_SECURITY_SECRET_KEY": SECRET,
        "CALBRIDGE_SERVER_PORT": str(port), "CALBRIDGE_SERVER_ACCESS_LOG": "false",
        "CALBRIDGE_WEBHOOKS_ALLOW_NETWORKS": "127.0.0.1/32",
        "CALBRIDGE_CHANGES_POLL_MS": str(poll_ms),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    code = ("import os\nfrom bridge.config import load_settings\nfrom bridge.server import run_worker\n"
            "run_worker(load_settings(None, os.environ), reuse_port=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=LOG, cwd=ROOT)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


# --- data -----------------------------------------------------------------------------

def seed(db_url: str, entries: int, appointments: int) -> dict[str, Any]:
    """A company with `entries` change-log rows, one staff member with an app
    password and `appointments` bookings to move."""
    from sqlalchemy import insert, update

    from bridge.config import DatabaseSettings
    from bridge.dav import passwords
    from bridge.db import repo
    from bridge.db.engine import Database
    from bridge.db.migrate import upgrade
    from bridge.db.models import ChangeEntry, Company

    upgrade(db_url)
    db = Database(DatabaseSettings(url=db_url))
    admin = repo.Actor("admin", "bench")
    with db.sync_session(write=True) as s:
        company = repo.create_company(s, "bench", "Bench Clinic", "Europe/Paris", admin)
        _, key = repo.create_api_key(s, company.id, SECRET.encode(), "bench")
        staff = repo.create_staff(s, company.id, {"email": "anna@bench.example",
                                                  "name": "Anna", "timezone": "Europe/Paris"}, admin)
        _, password = passwords.create(s, company.id, staff.id, "bench", admin)
        hrefs = []
        day = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)
        for i in range(appointments):
            start = day + dt.timedelta(days=i // 6, hours=i % 6)
            appt = repo.create_appointment(s, company.id, {
                "staff_id": staff.id, "start": start.isoformat(),
                "end": (start + dt.timedelta(minutes=45)).isoformat(),
                "service_name": "Follow-up", "customer_name": f"Customer {i}"}, admin)
            hrefs.append(appt.href)
        company_id, staff_id = company.id, staff.id
    before = {"start": "2027-03-01T10:00:00+01:00", "end": "2027-03-01T10:45:00+01:00",
              "notes": "x" * 300, "location": "Room 3"}
    with db.sync_session(write=True) as s:
        head = repo.company_version(s, company_id)
        now = dt.datetime.now(dt.UTC)
        rows = [{"company_id": company_id, "seq": head + i + 1, "type": "appointment.rescheduled",
                 "entity": "appointment", "entity_id": 1000 + i, "staff_id": staff_id,
                 "source": "caldav", "actor": "anna@bench.example", "created_at": now,
                 "data": {"fields": ["end", "start"], "before": before,
                          "after": {**before, "start": f"2027-03-02T{i % 24:02d}:00:00+01:00"}}}
                for i in range(entries)]
        for i in range(0, len(rows), 2000):
            s.execute(insert(ChangeEntry), rows[i:i + 2000])
        s.execute(update(Company).where(Company.id == company_id)
                  .values(change_seq=head + entries))
    db.sync_engine.dispose()
    return {"key": key, "company_id": company_id, "email": "anna@bench.example",
            "password": password, "hrefs": hrefs}


# --- change-feed throughput -------------------------------------------------------------

async def read_feed_http(base: str, key: str, limit: int) -> tuple[int, float]:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"}
    count, cursor = 0, None
    start = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["after"] = cursor
            async with http.get(f"{base}/api/v1/changes", params=params, headers=headers) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            count += len(page["items"])
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
    return count, time.perf_counter() - start


def read_feed_direct(db_url: str, company_id: int, limit: int) -> tuple[int, float]:
    from bridge.changes.service import read_changes
    from bridge.config import DatabaseSettings
    from bridge.db.engine import Database

    db = Database(DatabaseSettings(url=db_url))
    count, after = 0, None
    start = time.perf_counter()
    while True:
        with db.sync_session() as s:
            page = read_changes(s, company_id, after, limit, SECRET.encode())
        count += len(page.entries)
        json.dumps(page.entries)  # the API serialises too
        after = page.last_seq
        if after >= page.head:
            break
    elapsed = time.perf_counter() - start
    db.sync_engine.dispose()
    return count, elapsed


# --- end-to-end latency ------------------------------------------------------------------

class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.secret = ""
        self.arrived: dict[str, float] = {}
        self.bad = 0

    async def handle(self, request: Any) -> Any:
        from aiohttp import web
        from standardwebhooks import Webhook

        body = await request.read()
        now = time.perf_counter()
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except Exception:
            self.bad += 1
            return web.Response(status=401)
        data = payload["data"]
        if payload["type"] == "appointment.rescheduled":
            self.arrived[data["data"]["after"]["start"]] = now
        else:
            self.arrived[request.headers["webhook-id"]] = now
        return web.Response(text="ok")

    async def start(self) -> Any:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


def log_burst(db_url: str, company_id: int, n: int) -> None:
    """`n` reschedules logged in one transaction, numbered the way
    `repo.log_change` numbers them (the company row's counter)."""
    from sqlalchemy import insert, update

    from bridge.config import DatabaseSettings
    from bridge.db.engine import Database
    from bridge.db.models import ChangeEntry, Company

    db = Database(DatabaseSettings(url=db_url))
    with db.sync_session(write=True) as s:
        head = s.execute(update(Company).where(Company.id == company_id)
                         .values(change_seq=Company.change_seq + n)
                         .returning(Company.change_seq)).scalar_one()
        now = dt.datetime.now(dt.UTC)
        s.execute(insert(ChangeEntry), [
            {"company_id": company_id, "seq": head - n + i + 1, "type": "appointment.rescheduled",
             "entity": "appointment", "entity_id": 5000 + i, "staff_id": None, "source": "api",
             "actor": "bench", "created_at": now,
             "data": {"fields": ["start"], "before": {"start": "2029-01-01T09:00:00+00:00"},
                      "after": {"start": (dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
                                          + dt.timedelta(minutes=i)).isoformat()}}}
            for i in range(n)])
    db.sync_engine.dispose()


async def latency(base: str, info: dict[str, Any], rate: float, seconds: float,
                  warmup: int, burst: int) -> dict[str, Any]:
    import aiohttp
    import icalendar

    from bridge.notify.webhooks import secret_key, signed_headers

    receiver = Receiver()
    runner = await receiver.start()
    headers = {"Authorization": f"Bearer {info['key']}"}
    auth = {"Authorization": aiohttp.encode_basic_auth(info["email"], info["password"])} \
        if hasattr(aiohttp, "encode_basic_auth") else \
        {"Authorization": aiohttp.BasicAuth(info["email"], info["password"]).encode()}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/v1/webhooks", headers=headers, json={
                "url": f"http://127.0.0.1:{receiver.port}/hook",
                "event_types": ["appointment.rescheduled"]}) as r:
            assert r.status == 201, await r.text()
            receiver.secret = (await r.json())["secret"]
        texts: dict[str, str] = {}
        for href in info["hrefs"]:
            async with http.get(f"{base}/dav/{info['email']}/calendar/{href}", headers=auth) as r:
                assert r.status == 200, await r.text()
                texts[href] = await r.text()

        sent: dict[str, tuple[float, float]] = {}
        errors = 0
        polled: dict[str, float] = {}  # when a long poll on the feed returned each edit
        async with http.get(f"{base}/api/v1/changes", headers=headers,
                            params={"limit": 1000}) as r:
            cursor = (await r.json())["next_cursor"]
        while True:
            async with http.get(f"{base}/api/v1/changes", headers=headers,
                                params={"limit": 1000, "after": cursor}) as r:
                page = await r.json()
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break

        async def follow() -> None:
            nonlocal cursor
            while True:
                async with http.get(f"{base}/api/v1/changes", headers=headers,
                                    params={"after": cursor, "wait": 25}) as r:
                    page = await r.json()
                now = time.perf_counter()
                for e in page["items"]:
                    if e["type"] == "appointment.rescheduled":
                        polled[e["data"]["after"]["start"]] = now
                cursor = page["next_cursor"]

        follower = asyncio.create_task(follow())

        async def move(n: int) -> None:
            nonlocal errors
            href = info["hrefs"][n % len(info["hrefs"])]
            cal = icalendar.Calendar.from_ical(texts[href])
            ev = next(iter(cal.walk("VEVENT")))
            start = dt.datetime(2028, 1, 1, 8, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=15 * n)
            for name in ("DTSTART", "DTEND", "DURATION"):
                ev.pop(name, None)
            ev.add("DTSTART", start)
            ev.add("DTEND", start + dt.timedelta(minutes=45))
            body = cal.to_ical()
            t0 = time.perf_counter()
            async with http.put(f"{base}/dav/{info['email']}/calendar/{href}", data=body,
                                headers={**auth, "Content-Type": "text/calendar"}) as r:
                await r.read()
                t1 = time.perf_counter()
                if r.status >= 300:
                    errors += 1
                    return
            texts[href] = body.decode()
            if n >= warmup:
                sent[start.astimezone(dt.UTC).isoformat()] = (t0, t1)

        total = warmup + int(rate * seconds)
        tasks = []
        t_start = time.perf_counter()
        for n in range(total):
            delay = t_start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(move(n)))
        await asyncio.gather(*tasks)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            if all(_match(k, receiver.arrived) for k in sent):
                break
            await asyncio.sleep(0.05)

        follower.cancel()

        # The floor: a signed POST from here straight to the receiver.
        floor = []
        key = [secret_key(receiver.secret)]
        for i in range(200):
            body = json.dumps({"type": "bench.floor", "timestamp": "", "data": {}}).encode()
            t0 = time.perf_counter()
            async with http.post(f"http://127.0.0.1:{receiver.port}/hook", data=body,
                                 headers=signed_headers(key, f"floor_{i}", body)) as r:
                await r.read()
            floor.append((time.perf_counter() - t0) * 1000)  # the whole round trip

        # A burst: `burst` changes committed at once, delivered one by one in order.
        t0 = time.perf_counter()
        await asyncio.to_thread(log_burst, info["db_url"], info["company_id"], burst)
        committed = time.perf_counter()
        deadline = committed + 120
        while sum(k.startswith("2030-") for k in receiver.arrived) < burst:
            assert time.perf_counter() < deadline, "the burst was not delivered"
            await asyncio.sleep(0.05)
        last = max(v for k, v in receiver.arrived.items() if k.startswith("2030-"))
    await runner.cleanup()
    burst_rate = burst / (last - committed)
    from_send, from_answer, feed, missing = [], [], [], 0
    for k, (t0, t1) in sent.items():
        t = _match(k, receiver.arrived)
        p = _match(k, polled)
        if t is None or p is None:
            missing += 1
            continue
        from_send.append((t - t0) * 1000)
        from_answer.append((t - t1) * 1000)
        feed.append((p - t1) * 1000)
    return {"burst": burst, "burst_deliveries_per_s": round(burst_rate),
            "burst_commit_ms": round((committed - t0) * 1000),
            "puts": len(sent), "put_errors": errors, "missing": missing,
            "bad_signatures": receiver.bad, "from_put_sent": _dist(from_send),
            "from_put_answered": _dist(from_answer), "long_poll_from_put_answered": _dist(feed),
            "floor_signed_post": _dist(floor)}


def _match(utc_start: str, arrived: dict[str, float]) -> float | None:
    # The webhook carries the start in the appointment's zone; compare instants.
    instant = dt.datetime.fromisoformat(utc_start)
    for k, t in arrived.items():
        if k.startswith("20") and dt.datetime.fromisoformat(k) == instant:
            return t
    return None


def _dist(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    values = sorted(values)
    return {"p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))], 2),
            "n": len(values)}


# --- main -------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=5.0, help="CalDAV PUTs per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--poll-ms", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000, help="changes committed at once")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.seconds, args.burst = 2000, 3.0, 200

    tmp = Path(tempfile.mkdtemp(prefix="calbridge-changes-bench-"))
    pg_url = None
    if args.db == "postgresql":
        import psycopg

        name = f"calbridge_bench_{os.getpid()}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = pg_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    else:
        db_url = f"sqlite:///{tmp / 'bench.db'}"
    try:
        t0 = time.perf_counter()
        info = seed(db_url, args.entries, 60)
        print(f"seeded {args.entries} change entries and 60 appointments "
              f"({time.perf_counter() - t0:.1f} s, {args.db})", flush=True)
        port = free_port()
        proc = start_server(env_for(db_url, port, args.poll_ms), port)
        base = f"http://127.0.0.1:{port}"
        try:
            results: dict[str, Any] = {"db": args.db, "entries": args.entries,
                                       "poll_ms": args.poll_ms, "feed": {}}
            for limit in (1000, 100):
                asyncio.run(read_feed_http(base, info["key"], limit))  # warm
                n, secs = asyncio.run(read_feed_http(base, info["key"], limit))
                dn, dsecs = read_feed_direct(db_url, info["company_id"], limit)
                assert n == dn >= args.entries, (n, dn)
                results["feed"][f"limit_{limit}"] = {
                    "http_entries_per_s": round(n / secs), "direct_entries_per_s": round(dn / dsecs),
                    "http_vs_direct": round((n / secs) / (dn / dsecs), 2)}
            info["db_url"] = db_url
            results["latency"] = asyncio.run(latency(base, info, args.rate, args.seconds, 5,
                                                     args.burst))
            results["latency"]["rate_per_s"] = args.rate
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        if pg_url is not None:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')

    print(f"\nchange feed ({args.db}, {args.entries} entries of ~0.8 kB)")
    print(f"{'page size':>10} {'HTTP entries/s':>15} {'in-process/s':>13} {'HTTP/in-process':>16}")
    for limit, r in results["feed"].items():
        print(f"{limit.removeprefix('limit_'):>10} {r['http_entries_per_s']:>15,} "
              f"{r['direct_entries_per_s']:>13,} {r['http_vs_direct']:>16}")
    lat = results["latency"]
    print(f"\nCalDAV PUT -> webhook ({lat['rate_per_s']:g} PUTs/s, {lat['puts']} measured, "
          f"poll {args.poll_ms} ms; missing {lat['missing']}, bad signatures "
          f"{lat['bad_signatures']}, PUT errors {lat['put_errors']})")
    floor = lat["floor_signed_post"]
    for label, key in (("from PUT sent", "from_put_sent"), ("from PUT answered", "from_put_answered"),
                       ("feed long poll, from PUT answered", "long_poll_from_put_answered"),
                       ("floor: bare signed POST", "floor_signed_post")):
        d = lat[key]
        print(f"  {label:<34} p50 {d['p50_ms']:>8.2f} ms   p99 {d['p99_ms']:>8.2f} ms"
              + ("" if key == "floor_signed_post" else
                 f"   (x{d['p50_ms'] / floor['p50_ms']:.1f} / x{d['p99_ms'] / floor['p99_ms']:.1f} "
                 "the floor)"))
    print(f"\nburst: {lat['burst']} changes committed at once -> "
          f"{lat['burst_deliveries_per_s']:,} webhook deliveries/s to one endpoint "
          "(in order, one request at a time, each attempt recorded)")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"changes{'' if args.db == 'sqlite' else '-pg'}.json").write_text(
        json.dumps(results, indent=2))
    ok = lat["missing"] == 0 and lat["bad_signatures"] == 0 and lat["put_errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
