"""Feed benchmark (issue 3): what a feed request and a feed render cost.

In one run, for a staff feed of 2,000 appointments and a company feed of
20,000 (full privacy, the largest texts):

- HTTP: 200 responses/s, 304 responses/s and p50/p99 latency under
  concurrent clients, for calbridge (`calbridge serve`'s worker as deployed:
  metrics and access log on) and for a bare aiohttp handler returning
  the same bytes from memory (the floor for this stack); prints the ratio.
  Load comes from `wrk` when installed (apt-get install wrk), else from an
  aiohttp client (which then limits what is measured; the ratio still holds).
  With two CPUs or more, the servers run on the last one and the load on the
  first, and each figure is the best of interleaved rounds.
- Render: a cold render (no feed in memory: the VEVENT texts are read from
  the database and assembled), a render from nothing (every VEVENT rendered
  again), and the render after one appointment changed (the write, which
  renders that appointment, plus the next feed assembly), against building
  the same events with `icalendar` and `Calendar.to_ical()` from scratch.
- Peak memory of the server worker (VmHWM) and of this process.

    .venv/bin/python bench/feeds_bench.py [--db postgresql] [--seconds 5] [--quick]

Prints a table and writes bench/results/feeds.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import resource
import shutil
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
SERVERS = ("calbridge", "calbridge-nolog", "feeds-only", "bare")
LOG = subprocess.DEVNULL if os.environ.get("BENCH_SERVER_LOG") != "1" else None
HEADERS = {"Content-Type": "text/calendar; charset=utf-8"}


# --- servers (run as subprocesses of this script) --------------------------------------

def serve_calbridge(db_url: str, port: int, access_log: bool) -> None:
    from bridge.config import load_settings
    from bridge.server import run_worker

    settings = load_settings(None, {
        **{k: v for k, v in os.environ.items() if k.startswith("CALBRIDGE_")},
        "CALBRIDGE_DATABASE_URL": db_url, "CALBRIDGE_SECURITY_SECRET_KEY": SECRET,
        "CALBRIDGE_SERVER_PORT": str(port), "CALBRIDGE_FEEDS_WARN_BYTES": str(10**9),
        "CALBRIDGE_SERVER_ACCESS_LOG": "true" if access_log else "false",
    })
    run_worker(settings, reuse_port=False)


def serve_feeds_only(db_url: str, port: int) -> None:
    """The feed route alone, through aiohttp's router (no access log,
    metrics, error or API-key middleware): what the feed code itself costs."""
    from aiohttp import web

    from bridge import keys
    from bridge.config import load_settings
    from bridge.db.engine import Database
    from bridge.feeds import routes

    settings = load_settings(None, {
        "CALBRIDGE_DATABASE_URL": db_url, "CALBRIDGE_SECURITY_SECRET_KEY": SECRET,
        "CALBRIDGE_FEEDS_WARN_BYTES": str(10**9)})
    app = web.Application()
    app[keys.SETTINGS], app[keys.DB] = settings, Database(settings.database)
    app[keys.SECRET] = settings.secret()
    routes.setup(app)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_bare(files: list[str], port: int) -> None:
    """The floor: a handler returning bytes from memory (with the same ETag,
    answering 304 the same way)."""
    from aiohttp import web

    bodies = {}
    for i, name in enumerate(files):
        data = Path(name).read_bytes()
        etag = Path(name + ".etag").read_text()
        bodies[str(i)] = (data, etag)

    async def handler(request: web.Request) -> web.Response:
        data, etag = bodies[request.match_info["n"]]
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=data, headers={**HEADERS, "ETag": etag})

    app = web.Application()
    app.router.add_get("/bare/{n}.ics", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Servers on the last CPU, the load generator on the first: on a small machine
# the scheduler otherwise moves them around and the figures swing by half.
PIN = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
CPUS = sorted(os.sched_getaffinity(0)) if PIN else []


def _pin_load() -> None:
    if PIN:
        os.sched_setaffinity(0, {CPUS[0]})


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, *args, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=LOG, cwd=ROOT)
    if PIN:
        os.sched_setaffinity(proc.pid, {CPUS[-1]})
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server {args} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- load ---------------------------------------------------------------------------

def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    assert m, value
    n = float(m.group(1))
    return {"us": n / 1000, "ms": n, "s": n * 1000}[m.group(2)]


def load_wrk(url: str, seconds: int, conns: int, etag: str | None) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", url]
    if etag:
        cmd[1:1] = ["-H", f"If-None-Match: {etag}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    dist = out.split("Latency Distribution", 1)[1]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)\s*$", dist, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)\s*$", dist, re.M).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": done}


async def _load_aiohttp(url: str, seconds: int, conns: int, etag: str | None) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    headers = {"If-None-Match": etag} if etag else {}
    expect = 304 if etag else 200
    stop = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                assert resp.status == expect, resp.status
            latencies.append(time.perf_counter() - t)

    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     skip_auto_headers=("Accept-Encoding",)) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(conns)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "requests": len(latencies),
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def load(url: str, seconds: int, conns: int, etag: str | None) -> dict[str, float]:
    if shutil.which("wrk"):
        return load_wrk(url, seconds, conns, etag)
    return asyncio.run(_load_aiohttp(url, seconds, conns, etag))


# --- data -----------------------------------------------------------------------------

def seed(db_url: str, staff_events: int, company_events: int) -> dict[str, Any]:
    import random
    from zoneinfo import ZoneInfo

    from bridge.config import load_settings
    from bridge.db import repo
    from bridge.db.engine import Database
    from bridge.db.migrate import upgrade
    from bridge.feeds import service

    upgrade(db_url)
    settings = load_settings(None, {"CALBRIDGE_DATABASE_URL": db_url,
                                    "CALBRIDGE_SECURITY_SECRET_KEY": SECRET})
    db = Database(settings.database)
    actor = repo.Actor("admin", "bench")
    rng = random.Random(3)
    today = dt.datetime.now(dt.UTC).date()
    zones = ["Europe/Paris", "America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney"]
    began = time.perf_counter()
    with db.sync_session(write=True) as s:
        company = repo.create_company(s, "bench", "Bench Clinic", "Europe/Paris", actor)
        n_staff = max(1, company_events // staff_events)
        staff = [repo.create_staff(s, company.id, {
            "email": f"staff{i}@bench.example", "name": f"Staff Mëmber {i}",
            "timezone": zones[i % len(zones)]}, actor) for i in range(n_staff)]
        first_id = 0
        for i, person in enumerate(staff):
            tz = ZoneInfo(person.timezone)
            for n in range(staff_events):
                day = today + dt.timedelta(days=rng.randint(-59, 399))
                start = dt.datetime.combine(day, dt.time(rng.randint(8, 17), rng.choice((0, 30))),
                                            tz)
                appt = repo.create_appointment(s, company.id, {
                    "staff_id": person.id, "start": start.isoformat(),
                    "end": (start + dt.timedelta(minutes=45)).isoformat(),
                    "service_name": rng.choice(["Consultation", "Follow-up, 30 min",
                                                "Cleaning; full", "Röntgen review"]),
                    "customer_name": f"Customer {i}-{n} Ångström",
                    "customer_email": f"c{i}x{n}@customer.example",
                    "customer_phone": "+33 6 12 34 56 78",
                    "location": f"Room {n % 9}, 2nd floor",
                    "notes": "Bring the referral letter; allergic to latex" if n % 4 == 0 else "",
                }, actor)
                if i == 0 and n == 0:
                    first_id = appt.id
        staff_link = service.create_feed(s, company.id, {"staff_id": staff[0].id},
                                         settings.secret(), actor)
        company_link = service.create_feed(s, company.id, {"scope": "company"},
                                           settings.secret(), actor)
        out = {
            "company_id": company.id,
            "first_appointment": first_id,
            "staff": (staff_link.id, service.token_of(staff_link, settings.secret())),
            "company": (company_link.id, service.token_of(company_link, settings.secret())),
        }
    out["seed_seconds"] = time.perf_counter() - began
    db.sync_engine.dispose()
    return out


def render_figures(db_url: str, data: dict[str, Any], repeat: int) -> dict[str, Any]:
    import icalendar
    from sqlalchemy import select

    from bridge.config import load_settings
    from bridge.db import repo
    from bridge.db.engine import Database
    from bridge.db.models import Appointment, FeedLink, Staff
    from bridge.domain import ical
    from bridge.domain.appointments import summary_for
    from bridge.feeds import service

    settings = load_settings(None, {"CALBRIDGE_DATABASE_URL": db_url,
                                    "CALBRIDGE_SECURITY_SECRET_KEY": SECRET})
    db = Database(settings.database)
    fs = settings.feeds
    today = dt.datetime.now(dt.UTC).date()
    kw = {"today": today, "days_back": fs.window_days_back, "days_ahead": fs.window_days_ahead,
          "refresh_minutes": fs.refresh_minutes, "warn_bytes": 10**9}

    def best(fn: Any, setup: Any = None) -> float:
        times = []
        for _ in range(repeat):
            if setup is not None:
                setup()
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    def measure(name: str, link_id: int) -> dict[str, Any]:

        def cold() -> Any:
            with db.sync_session() as s:
                return service.build_feed(s, link_id, **kw)

        body = cold()

        def rows() -> list[tuple[Appointment, str]]:
            with db.sync_session() as s:
                link = s.get(FeedLink, link_id)
                assert link is not None
                start, end = service.window(today, fs.window_days_back, fs.window_days_ahead)
                q = (select(Appointment, Staff.name).join(Staff, Staff.id == Appointment.staff_id)
                     .where(Appointment.company_id == link.company_id,
                            Appointment.status != "cancelled",
                            Appointment.last_occurrence > start,
                            Appointment.first_occurrence < end)
                     .order_by(Appointment.first_occurrence, Appointment.id))
                if link.scope == "staff":
                    q = q.where(Appointment.staff_id == link.staff_id)
                return [(a, n) for a, n in s.execute(q)]

        def from_nothing() -> bytes:
            texts, zones = [], set()
            for appt, staff_name in rows():
                text = ical.render_appointment(appt, "full")
                texts.append(ical.with_staff_name(text, staff_name) if name == "company" else text)
                zones.add(appt.timezone)
            return ical.assemble_feed(ical.FeedHeader("x", "Europe/Paris"), texts, zones).encode()

        def with_icalendar() -> bytes:
            cal = icalendar.Calendar()
            cal.add("prodid", ical.PRODID)
            cal.add("version", "2.0")
            cal.add("method", "PUBLISH")
            cal.add("x-wr-calname", "x")
            for appt, staff_name in rows():
                ev = icalendar.Event()
                ev.add("uid", appt.uid)
                ev.add("dtstamp", appt.updated_at)
                assert appt.start_at and appt.end_at
                tz = ical.ZoneInfo(appt.timezone)
                ev.add("dtstart", appt.start_at.astimezone(tz))
                ev.add("dtend", appt.end_at.astimezone(tz))
                ev.add("sequence", appt.sequence)
                ev.add("created", appt.created_at)
                ev.add("last-modified", appt.updated_at)
                ev.add("status", "CONFIRMED")
                ev.add("location", appt.location)
                ev.add("description", f"Customer: {appt.customer_name}\nEmail: "
                                      f"{appt.customer_email}\n{appt.notes}")
                summary = summary_for(appt)
                ev.add("summary", f"{staff_name}: {summary}" if name == "company" else summary)
                cal.add_component(ev)
            cal.add_missing_timezones()
            return cal.to_ical()

        state: dict[str, Any] = {}

        def before_change() -> None:
            with db.sync_session() as s:
                state["since"] = repo.company_version(s, data["company_id"])
                state["previous"] = service.build_feed(s, link_id, **kw)

        def change() -> None:
            """The booking write (which renders that appointment's texts)."""
            before_change()
            t = time.perf_counter()
            with db.sync_session(write=True) as s:
                appt = s.get(Appointment, data["first_appointment"])
                assert appt is not None
                repo.update_appointment(s, data["company_id"], appt.id, {
                    "location": "Room " + str(time.perf_counter_ns())}, repo.Actor("api", "bench"))
            state["write_s"] = min(state.get("write_s", 1e9), time.perf_counter() - t)

        def render_after_change() -> Any:
            """The render work a change causes: that appointment's VEVENT texts
            (done in the write) and the feed from the cached one plus that row."""
            with db.sync_session() as s:
                appt = s.get(Appointment, data["first_appointment"])
                assert appt is not None
                ical.render_all_levels(appt)
                return service.build_feed(s, link_id, previous=state["previous"],
                                          since=state["since"], **kw)

        return {
            "events": body.events,
            "bytes": len(body.body),
            "cold_assemble_s": best(cold),
            "render_from_nothing_s": best(from_nothing),
            "after_one_change_s": best(render_after_change, change),
            "booking_write_s": state["write_s"],
            "icalendar_to_ical_s": best(with_icalendar),
        }

    results = {name: measure(name, data[name][0]) for name in ("staff", "company")}
    db.sync_engine.dispose()
    return results


# --- main -----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--staff-events", type=int, default=2000)
    parser.add_argument("--company-events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small data, short runs (a smoke test)")
    parser.add_argument("--keep", metavar="DIR",
                        help="SQLite only: keep the seeded database in DIR and reuse it next time")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved runs per figure; the best counts (a busy machine)")
    parser.add_argument("--serve", choices=SERVERS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve in ("calbridge", "calbridge-nolog"):
        return serve_calbridge(args.url, args.port, args.serve == "calbridge")
    if args.serve == "feeds-only":
        return serve_feeds_only(args.url, args.port)
    if args.serve == "bare":
        return serve_bare(args.files, args.port)
    if args.quick:
        args.staff_events, args.company_events, args.seconds, args.repeat = 200, 1000, 1, 1
        args.rounds = 1

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="feeds-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    pg_name = None
    if args.db == "sqlite":
        db_url = f"sqlite:///{tmp}/bench.db"
    else:
        import psycopg

        pg_name = f"calbridge_bench_{os.getpid()}"
        with psycopg.connect(args.pg_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        db_url = args.pg_admin.rsplit("/", 1)[0] + "/" + pg_name
    try:
        run(args, db_url, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        if pg_name:
            import psycopg

            with psycopg.connect(args.pg_admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def print_render(render: dict[str, Any], repeat: int) -> None:
    print("\nRender (best of", repeat, ")")
    print(f"{'feed':<9}{'events':>7}{'size':>9}{'cold':>9}{'from nothing':>14}"
          f"{'after 1 change':>16}{'icalendar':>11}{'speed-up':>10}{'(the write)':>13}")
    for name in ("staff", "company"):
        r = render[name]
        print(f"{name:<9}{r['events']:>7}{r['bytes'] / 1e6:>8.2f}M"
              f"{r['cold_assemble_s'] * 1000:>7.0f}ms{r['render_from_nothing_s'] * 1000:>12.0f}ms"
              f"{r['after_one_change_s'] * 1000:>14.0f}ms{r['icalendar_to_ical_s'] * 1000:>9.0f}ms"
              f"{r['icalendar_to_ical_s'] / r['after_one_change_s']:>9.1f}x"
              f"{r['booking_write_s'] * 1000:>11.0f}ms")
    print("  cold: no feed in memory, VEVENT texts read and assembled; from nothing: every VEVENT\n"
          "  rendered again; after 1 change: that VEVENT rendered + the cached feed updated;\n"
          "  icalendar: the same events built and Calendar.to_ical() from scratch; speed-up:\n"
          "  icalendar / after 1 change; (the write): the booking update's own transaction")


def print_table(http: dict[str, Any], value: str, ratio: str, *, latency: bool) -> None:
    """One row per feed and answer: each server's `value`, then `ratio` of all but bare."""
    print(f"{'feed':<9}{'kind':<5}{'calbridge':>10}{'no log':>9}{'feeds only':>11}{'bare':>9}"
          f"{'ratio':>7}{'no log':>7}{'feeds only':>11}" + ("   p50 / p99 ms" if latency else ""))
    for name in ("staff", "company"):
        for kind in ("200", "304"):
            c, n, f, b = (http[name][f"{s}_{kind}"] for s in SERVERS)
            print(f"{name:<9}{kind:<5}{c[value]:>10,.0f}{n[value]:>9,.0f}{f[value]:>11,.0f}"
                  f"{b[value]:>9,.0f}{c[ratio]:>7.2f}{n[ratio]:>7.2f}{f[ratio]:>11.2f}"
                  + ("   " + "  ".join(f"{r['p50_ms']:.2f}/{r['p99_ms']:.2f}" for r in (c, n, f, b))
                     if latency else ""))


def run(args: argparse.Namespace, db_url: str, tmp: Path) -> None:
    import urllib.request

    saved = tmp / "seed.json"
    if args.keep and saved.exists():
        data = json.loads(saved.read_text())
        print(f"reusing the database in {tmp}", flush=True)
    else:
        print(f"seeding {args.company_events} appointments ({args.db}) ...", flush=True)
        data = seed(db_url, args.staff_events, args.company_events)
        saved.write_text(json.dumps(data))
    print(f"  seeded in {data['seed_seconds']:.1f} s (each write renders its VEVENT texts)",
          flush=True)
    render = render_figures(db_url, data, args.repeat)
    print_render(render, args.repeat)

    _pin_load()  # this process and wrk (its child); each server is moved in start()
    ports = {name: free_port() for name in SERVERS}
    servers = {"calbridge": start(["--serve", "calbridge", "--url", db_url], ports["calbridge"])}
    files, etags, urls = [], {}, {}
    http: dict[str, Any] = {"staff": {}, "company": {}}
    try:
        for i, name in enumerate(("staff", "company")):
            url = f"http://127.0.0.1:{ports['calbridge']}/feeds/{data[name][1]}.ics"
            with urllib.request.urlopen(url) as resp:
                body, etag = resp.read(), resp.headers["ETag"]
            file = tmp / f"{name}.ics"
            file.write_bytes(body)
            Path(str(file) + ".etag").write_text(etag)
            files.append(str(file))
            etags[name] = etag
            urls[name] = {
                "calbridge": url,
                "calbridge-nolog": url.replace(str(ports["calbridge"]),
                                               str(ports["calbridge-nolog"])),
                "feeds-only": url.replace(str(ports["calbridge"]), str(ports["feeds-only"])),
                "bare": f"http://127.0.0.1:{ports['bare']}/bare/{i}.ics",
            }
        servers["calbridge-nolog"] = start(["--serve", "calbridge-nolog", "--url", db_url],
                                           ports["calbridge-nolog"])
        servers["feeds-only"] = start(["--serve", "feeds-only", "--url", db_url],
                                      ports["feeds-only"])
        servers["bare"] = start(["--serve", "bare", "--files", *files], ports["bare"])
        # Interleaved rounds (the order reversed every other round): the machine's
        # speed drifts, so each round's ratio compares neighbours, and the
        # ratio printed is the median of the rounds'; req/s is the best round.
        for name in ("staff", "company"):
            for kind in ("200", "304"):
                rounds: list[dict[str, float]] = []
                for n in range(args.rounds):
                    order = SERVERS if n % 2 == 0 else SERVERS[::-1]
                    this: dict[str, float] = {}
                    for server in order:
                        used = cpu_seconds(servers[server].pid)
                        got = load(urls[name][server], args.seconds, args.connections,
                                   etags[name] if kind == "304" else None)
                        used = cpu_seconds(servers[server].pid) - used
                        key = f"{server}_{kind}"
                        this[server] = got["rps"]
                        this[f"{server}_cpu"] = used / max(got["requests"], 1) * 1e6
                        if key not in http[name] or got["rps"] > http[name][key]["rps"]:
                            http[name][key] = got
                    rounds.append(this)
                for server in SERVERS:
                    figures = http[name][f"{server}_{kind}"]
                    figures["ratio"] = statistics.median(r[server] / r["bare"] for r in rounds)
                    figures["cpu_us"] = statistics.median(r[f"{server}_cpu"] for r in rounds)
                    figures["cpu_ratio"] = statistics.median(
                        r["bare_cpu"] / r[f"{server}_cpu"] for r in rounds)
        server_mb = vm_hwm_mb(servers["calbridge"].pid)
        bare_mb = vm_hwm_mb(servers["bare"].pid)
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait()

    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    loader = "wrk -t1" if shutil.which("wrk") else "aiohttp client"
    print(f"\nHTTP ({args.db}, {args.connections} connections, {args.seconds} s each, load: "
          f"{loader})")
    print_table(http, "rps", "ratio", latency=True)
    print(f"\nServer CPU time per request (µs, median of {args.rounds} rounds; ratio: bare's / this)")
    print_table(http, "cpu_us", "cpu_ratio", latency=False)
    print("  req/s (best round). calbridge: `calbridge serve`'s worker as deployed (access log\n"
          "  on); no log: access log off; feeds only: the feed route alone, through the\n"
          "  router, no metrics; bare: aiohttp returning the same bytes from memory.\n"
          f"  Ratios: / bare, the median of {args.rounds} rounds' ratios.")
    print(f"\nPeak memory: calbridge worker {server_mb:.0f} MB, bare handler {bare_mb:.0f} MB, "
          f"this process (seeding, rendering) {own_mb:.0f} MB")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"feeds-{args.db}.json").write_text(json.dumps({
        "db": args.db, "connections": args.connections, "seconds": args.seconds, "load": loader,
        "http": http, "render": render, "seed_seconds": data["seed_seconds"],
        "peak_mb": {"calbridge_worker": server_mb, "bare": bare_mb, "bench": own_mb},
    }, indent=2))


if __name__ == "__main__":
    main()
