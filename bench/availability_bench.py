"""Availability and calendar-sync benchmark (issue 6).

- Availability for a group of 50 staff over 4 weeks, each with 2,000
  external events (a quarter weekly-recurring) read from a linked ICS
  calendar, plus appointments and working hours: the first answer in a
  fresh process (cold) and the median of repeated answers (warm), through
  the service and over HTTP (the whole middleware stack).
- One poll cycle over 500 linked ICS sources: the first (every source
  read, parsed and expanded) and a cycle where all 500 are unchanged (each
  costs one conditional GET answered 304).
- Reading one 2,000-event calendar into busy intervals (parse + expand):
  calbridge's expansion, and `recurring_ical_events.between` over the same
  window as the reference.

    .venv/bin/python bench/availability_bench.py [--db postgresql] [--quick]

Prints a table and writes bench/results/availability.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, web  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402
from sqlalchemy import update  # noqa: E402

from bridge.availability.service import Query, availability  # noqa: E402
from bridge.config import Settings, load_settings  # noqa: E402
from bridge.db import repo  # noqa: E402
from bridge.db.engine import Database  # noqa: E402
from bridge.db.migrate import upgrade  # noqa: E402
from bridge.db.models import CalendarLink, utcnow  # noqa: E402
from bridge.domain.busy import (  # noqa: E402
    ExpandOptions,
    expand,
    parse_calendars,
    parse_working_hours,
)
from bridge.sync import service  # noqa: E402
from bridge.sync.scheduler import Syncer, compute_busy  # noqa: E402

SECRET = "bench-secret-" + "x" * 40
ACTOR = repo.Actor("admin", "bench")


def calendar_text(seed: int, events: int, start: dt.datetime, days: int) -> str:
    """`events` VEVENTs over `days` days: 75% single, 25% weekly (COUNT 8)."""
    rng = random.Random(seed)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bench//EN"]
    for i in range(events):
        day = start + dt.timedelta(days=rng.randrange(days))
        s = day.replace(hour=rng.randrange(6, 20), minute=rng.choice((0, 15, 30, 45)))
        e = s + dt.timedelta(minutes=rng.choice((15, 30, 45, 60, 90)))
        fmt = "%Y%m%dT%H%M%S"
        lines += ["BEGIN:VEVENT", f"UID:bench-{seed}-{i}", "DTSTAMP:20260101T000000Z",
                  f"DTSTART;TZID=Europe/Paris:{s.strftime(fmt)}",
                  f"DTEND;TZID=Europe/Paris:{e.strftime(fmt)}", f"SUMMARY:event {i}"]
        if i % 4 == 0:
            lines.append("RRULE:FREQ=WEEKLY;COUNT=8")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def settings_for(url: str, **sync: Any) -> Settings:
    s = load_settings(ROOT / "config" / "calbridge.toml", {
        "CALBRIDGE_DATABASE_URL": url, "CALBRIDGE_SECURITY_SECRET_KEY": SECRET,
        "CALBRIDGE_SERVER_ACCESS_LOG": "false"})
    return s.replace(sync={"enabled": False, "allow_private_addresses": True,
                           "jitter": 0.0, **sync},
                     alerts={"email": False}, webhooks={"worker": False})


def make_db(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        from tests.conftest import create_pg_database

        url = create_pg_database("calbridge_bench")
    upgrade(url)
    return url


def seed_group(db: Database, settings: Settings, staff_n: int, events: int,
               start: dt.datetime) -> tuple[int, int, float]:
    """A company, a group of `staff_n`, each with an ICS link whose snapshot
    holds `events` events (expanded for real), and 40 appointments each."""
    t_expand = 0.0
    with db.sync_session(write=True) as s:
        company = repo.create_company(s, "bench", "Bench", "Europe/Paris", ACTOR)
        group = repo.create_group(s, company.id, {"slug": "team", "name": "Team"}, ACTOR)
        cid, gid = company.id, group.id
    window_end = start + dt.timedelta(days=settings.sync.window_days_ahead)
    for i in range(staff_n):
        with db.sync_session(write=True) as s:
            staff = repo.create_staff(s, cid, {"email": f"s{i}@bench.example", "name": f"S{i}",
                                               "timezone": "Europe/Paris",
                                               "group_ids": [gid]}, ACTOR)
            link = service.create_link(s, settings, cid, staff.id, {
                "kind": "ics", "url": f"https://cal.example.com/{i}.ics"}, ACTOR)
            text = calendar_text(i, events, start, 180)
            t0 = time.perf_counter()
            busy = compute_busy([text], settings, "Europe/Paris", start, window_end)
            t_expand += time.perf_counter() - t0
            service._replace_busy(s, link, busy)
            link.health, link.window_end = "ok", window_end
            for k in range(40):
                a = start + dt.timedelta(days=k % 28, hours=9 + k % 8)
                repo.create_appointment(s, cid, {
                    "staff_id": staff.id, "start": a.isoformat(),
                    "end": (a + dt.timedelta(minutes=45)).isoformat(),
                    "service_name": "Visit", "customer_name": f"C{k}"}, ACTOR)
    return cid, gid, t_expand / staff_n


def bench_availability(url: str, settings: Settings, cid: int, gid: int, start: dt.datetime,
                       rounds: int) -> dict[str, Any]:
    q = Query(start=start, end=start + dt.timedelta(days=28), group_id=gid,
              duration=dt.timedelta(minutes=30), granularity=dt.timedelta(minutes=15),
              working_hours=parse_working_hours("mon-fri 09:00-18:00"))
    db = Database(settings.database)  # fresh engine: a cold first query
    t0 = time.perf_counter()
    with db.sync_session() as s:
        first = availability(s, cid, q)
    cold = time.perf_counter() - t0
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        with db.sync_session() as s:
            availability(s, cid, q)
        times.append(time.perf_counter() - t0)
    db.sync_engine.dispose()
    busy = sum(len(p["busy"]) for p in first["staff"])
    return {"cold_ms": cold * 1000, "warm_ms": statistics.median(times) * 1000,
            "busy_intervals": busy, "any_of_slots": len(first["any_of"]),
            "all_of_slots": len(first["all_of"])}


async def bench_http(settings: Settings, cid: int, gid: int, start: dt.datetime,
                     rounds: int) -> dict[str, Any]:
    from bridge.app import create_app

    with Database(settings.database).sync_session(write=True) as s:
        _, key = repo.create_api_key(s, cid, settings.secret(), "bench")
    server = TestServer(create_app(settings))
    await server.start_server()
    params = {"group": str(gid), "start": start.isoformat(),
              "end": (start + dt.timedelta(days=28)).isoformat(), "duration": "30",
              "granularity": "15", "working_hours": "mon-fri 09:00-18:00", "busy": "false"}
    times = []
    async with ClientSession() as http:
        for i in range(rounds + 1):
            t0 = time.perf_counter()
            async with http.get(server.make_url("/api/v1/availability"), params=params,
                                headers={"Authorization": f"Bearer {key}"}) as resp:
                body = await resp.read()
                assert resp.status == 200, body[:300]
            if i:
                times.append(time.perf_counter() - t0)
    await server.close()
    return {"http_warm_ms": statistics.median(times) * 1000, "http_bytes": len(body)}


async def bench_poll(url: str, sources: int) -> dict[str, Any]:
    """One poll cycle over `sources` ICS links on a local server (first: all
    read; then: all unchanged, each a 304)."""
    text = calendar_text(7, 20, dt.datetime(2026, 1, 5), 60)
    hits = {"200": 0, "304": 0}

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            hits["304"] += 1
            return web.Response(status=304, headers={"ETag": '"v1"'})
        hits["200"] += 1
        return web.Response(text=text, content_type="text/calendar", headers={"ETag": '"v1"'})

    app = web.Application()
    app.router.add_get("/{n}.ics", handler)
    server = TestServer(app)
    await server.start_server()
    settings = settings_for(url, batch=sources, concurrency=16)
    db = Database(settings.database)
    with db.sync_session(write=True) as s:
        company = repo.create_company(s, "pollbench", "Poll bench", "UTC", ACTOR)
        staff = repo.create_staff(s, company.id, {"email": "p@bench.example", "name": "P"},
                                  ACTOR)
        for n in range(sources):
            service.create_link(s, settings, company.id, staff.id, {
                "kind": "ics", "url": str(server.make_url(f"/{n}.ics"))}, ACTOR)
    syncer = Syncer(settings, db)
    out: dict[str, Any] = {}
    for label in ("first", "unchanged", "unchanged_2"):
        with db.sync_session(write=True) as s:
            s.execute(update(CalendarLink).values(next_poll_at=utcnow()))
        before = dict(hits)
        t0 = time.perf_counter()
        reports = await syncer.run_once()
        elapsed = time.perf_counter() - t0
        assert len(reports) == sources and all(r.outcome.ok for r in reports)
        out[label] = {"seconds": elapsed, "per_source_ms": elapsed / sources * 1000,
                      "200": hits["200"] - before["200"], "304": hits["304"] - before["304"]}
    await syncer.close()
    await db.dispose()
    await server.close()
    return out


def bench_expand(events: int) -> dict[str, Any]:
    import recurring_ical_events

    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=180)
    text = calendar_text(3, events, start.replace(tzinfo=None), 180)
    t0 = time.perf_counter()
    cals = parse_calendars(text)
    ours = expand(cals, start, end, ExpandOptions(timezone="Europe/Paris"))
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    import icalendar

    ref = recurring_ical_events.of(icalendar.Calendar.from_ical(text)).between(start, end)
    t_ref = time.perf_counter() - t0
    return {"events": events, "intervals": len(ours.intervals), "reference_occurrences": len(ref),
            "calbridge_ms": t_ours * 1000, "reference_ms": t_ref * 1000}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--quick", action="store_true", help="10 staff, 100 sources")
    args = ap.parse_args()
    staff_n, sources, rounds = (10, 100, 5) if args.quick else (50, 500, 10)
    results: dict[str, Any] = {"db": args.db, "staff": staff_n, "events_per_staff": 2000,
                               "sources": sources}
    with tempfile.TemporaryDirectory() as tmp:
        url = make_db(args.db, Path(tmp))
        settings = settings_for(url)
        db = Database(settings.database)
        start = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start += dt.timedelta(days=(7 - start.weekday()) % 7 or 7)  # next Monday
        t0 = time.perf_counter()
        cid, gid, expand_s = seed_group(db, settings, staff_n, 2000, start)
        results["seed_seconds"] = time.perf_counter() - t0
        results["expand_2000_events_ms"] = expand_s * 1000
        db.sync_engine.dispose()
        results["availability"] = bench_availability(url, settings, cid, gid, start, rounds)
        results["availability"].update(asyncio.run(bench_http(settings, cid, gid, start,
                                                                rounds)))
        results["expand"] = bench_expand(2000)
        poll_url = make_db(args.db, Path(tmp) / "poll") if args.db == "postgresql" else \
            f"sqlite:///{Path(tmp) / 'poll.db'}"
        if args.db == "sqlite":
            upgrade(poll_url)
        results["poll"] = asyncio.run(bench_poll(poll_url, sources))
        if args.db == "postgresql":
            from tests.conftest import drop_pg_database

            drop_pg_database(url)
            drop_pg_database(poll_url)
    a, p, e = results["availability"], results["poll"], results["expand"]
    print(f"availability, group of {staff_n} staff x 2,000 external events, 4 weeks "
          f"({args.db}):")
    print(f"  cold (fresh engine)    {a['cold_ms']:8.1f} ms")
    print(f"  warm (median)          {a['warm_ms']:8.1f} ms   over HTTP {a['http_warm_ms']:.1f} ms"
          f" ({a['http_bytes']} bytes)")
    print(f"  busy intervals {a['busy_intervals']}, any-of slots {a['any_of_slots']}, "
          f"all-of slots {a['all_of_slots']}")
    print(f"read one 2,000-event calendar: calbridge {e['calbridge_ms']:.0f} ms "
          f"(parse + capped lazy expansion), recurring_ical_events.between "
          f"{e['reference_ms']:.0f} ms (ratio {e['reference_ms'] / e['calbridge_ms']:.2f}x)")
    print(f"poll cycle over {sources} ICS sources:")
    for label in ("first", "unchanged", "unchanged_2"):
        r = p[label]
        print(f"  {label:12s} {r['seconds'] * 1000:8.0f} ms  ({r['per_source_ms']:.2f} ms/source;"
              f" {r['200']} full reads, {r['304']} x 304)")
    print(f"  unchanged vs first: {p['first']['seconds'] / p['unchanged']['seconds']:.1f}x cheaper")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"availability{'' if args.db == 'sqlite' else '-pg'}.json").write_text(
        json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
