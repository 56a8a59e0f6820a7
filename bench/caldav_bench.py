"""CalDAV benchmark: calbridge against a stock Radicale 3.9 (filesystem storage), one run.

    .venv/bin/python bench/caldav_bench.py                 # 2,000 and 10,000 events
    .venv/bin/python bench/caldav_bench.py --sizes 500 --json

Workload (fixed seed, the same for both servers): N events over ±1 year
around 2026-11-22, 10% weekly recurring (half with COUNT=26, half without
end), 10% all-day, the rest timed in Europe/Paris with a VTIMEZONE, ~1.5 kB
each. Both servers run as their own process (`calbridge serve`, `python -m
radicale`) on 127.0.0.1; the calendar is loaded before the clock starts
(calbridge through its storage unit of work, Radicale by writing its item
files), then measured over HTTP:

- PUT throughput: new events, 8 concurrent clients, with N already stored;
- one-week calendar-query REPORT (median of 15);
- calendar-multiget of 50 (median of 15);
- PROPFIND Depth 1 on the calendar (median of 5);
- sync-collection after 10 edits (median of 5 rounds);
- peak memory of the server process (VmHWM).

Every answer is checked: the week query must return exactly the UIDs that
the generator says overlap the week (computed here independently, RFC 4791
§9.9 with DATE values read as UTC); a multiget must return the 50 objects;
PROPFIND must list N items; the sync report must name the 10 edited items.
A fast wrong answer stops the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.domain.ical import vtimezone  # noqa: E402

PARIS = ZoneInfo("Europe/Paris")
REF = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
WEEK = (dt.datetime(2026, 11, 23, tzinfo=dt.UTC), dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
USER, PASSWORD = "bench@bench.example", "bench"
DAV_NS = "{DAV:}"
CAL_NS = "{urn:ietf:params:xml:ns:caldav}"
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua. ") * 8
VTZ = vtimezone("Europe/Paris").replace("\r\n", "\n").strip("\n").replace("\n", "\r\n")


# --- workload ------------------------------------------------------------------------

@dataclass
class Event:
    uid: str
    kind: str  # timed | allday | weekly | weekly_open
    start: dt.datetime | dt.date
    end: dt.datetime | dt.date
    text: str = ""

    def occurrences(self, until: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """UTC occurrences (DATE values as UTC midnight), up to `until`."""
        if self.kind == "allday":
            assert not isinstance(self.start, dt.datetime)
            yield (dt.datetime.combine(self.start, dt.time(), dt.UTC),
                   dt.datetime.combine(self.end, dt.time(), dt.UTC))  # type: ignore[arg-type]
            return
        assert isinstance(self.start, dt.datetime) and isinstance(self.end, dt.datetime)
        count = 26 if self.kind == "weekly" else (1 if self.kind == "timed" else 10_000)
        for k in range(count):
            s = (self.start + dt.timedelta(weeks=k)).replace(tzinfo=PARIS)
            e = (self.end + dt.timedelta(weeks=k)).replace(tzinfo=PARIS)
            if s.astimezone(dt.UTC) > until:
                return
            yield s.astimezone(dt.UTC), e.astimezone(dt.UTC)

    def overlaps(self, lo: dt.datetime, hi: dt.datetime) -> bool:
        return any(s < hi and e > lo for s, e in self.occurrences(hi))


def _local(value: dt.datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


def make_events(n: int, seed: int = 4) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        day = (REF + dt.timedelta(days=rng.randint(-365, 365))).date()
        uid = f"bench-{n}-{i:06d}@bench.example"
        if i % 10 == 1:
            ev = Event(uid, "allday", day, day + dt.timedelta(days=1))
        else:
            start = dt.datetime.combine(day, dt.time(rng.randint(7, 18), rng.choice((0, 30))))
            end = start + dt.timedelta(minutes=rng.choice((30, 45, 60, 90, 120)))
            kind = "timed" if i % 10 != 2 else ("weekly" if i % 20 == 2 else "weekly_open")
            ev = Event(uid, kind, start, end)
        ev.text = render(ev, rng)
        events.append(ev)
    return events


def render(ev: Event, rng: random.Random, summary: str = "") -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//calbridge bench//EN"]
    if ev.kind != "allday":
        lines.append(VTZ)
    lines += ["BEGIN:VEVENT", f"UID:{ev.uid}", "DTSTAMP:20261101T000000Z"]
    if ev.kind == "allday":
        assert not isinstance(ev.start, dt.datetime) and not isinstance(ev.end, dt.datetime)
        lines += [f"DTSTART;VALUE=DATE:{ev.start:%Y%m%d}", f"DTEND;VALUE=DATE:{ev.end:%Y%m%d}"]
    else:
        assert isinstance(ev.start, dt.datetime) and isinstance(ev.end, dt.datetime)
        lines += [f"DTSTART;TZID=Europe/Paris:{_local(ev.start)}",
                  f"DTEND;TZID=Europe/Paris:{_local(ev.end)}"]
    if ev.kind == "weekly":
        lines.append("RRULE:FREQ=WEEKLY;COUNT=26")
    elif ev.kind == "weekly_open":
        lines.append("RRULE:FREQ=WEEKLY")
    lines.append(f"SUMMARY:{summary or 'Event ' + ev.uid[:18]}")
    body = LOREM[: 500 + rng.randint(0, 300)]
    lines += _fold(f"DESCRIPTION:{body}")
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def _fold(line: str) -> list[str]:
    out = [line[:75]]
    rest = line[75:]
    while rest:
        out.append(" " + rest[:74])
        rest = rest[74:]
    return out


# --- servers ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    base: str
    calendar: str  # path of the calendar collection, with trailing slash
    auth: tuple[str, str]
    sessions: list[requests.Session] = field(default_factory=list)

    def peak_memory_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def session(self) -> requests.Session:
        s = requests.Session()
        s.auth = self.auth
        self.sessions.append(s)
        return s

    def stop(self) -> None:
        for s in self.sessions:
            s.close()
        self.proc.terminate()
        self.proc.wait(30)


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start")


def start_calbridge(workdir: Path, events: list[Event]) -> Server:
    from bridge.config import load_settings
    from bridge.dav import passwords, service
    from bridge.db import repo
    from bridge.db.engine import Database
    from bridge.db.migrate import upgrade

    db_path = workdir / "calbridge.db"
    url = f"sqlite:///{db_path}"
    port = free_port()
    config = workdir / "calbridge.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\naccess_log = false\n'
        f'[database]\nurl = "{url}"\n[security]\nsecret_key = "{"b" * 40}"\n')
    upgrade(url)
    settings = load_settings(config, environ={})
    db = Database(settings.database)
    actor = repo.Actor("admin", "bench")
    with db.sync_session(write=True) as s:
        company = repo.create_company(s, "bench", "Bench", "Europe/Paris", actor)
        staff = repo.create_staff(s, company.id, {"email": USER, "name": "Bench"}, actor)
        row, _ = passwords.create(s, company.id, staff.id, "bench", actor)
        from bridge.domain.secrets import hash_password

        row.password_hash = hash_password(PASSWORD)
        scope = service.Scope("calendar", company.id, staff.id)
    caldav_actor = repo.Actor("caldav", USER)
    for chunk in range(0, len(events), 500):
        with db.sync_session(write=True) as s:
            for ev in events[chunk:chunk + 500]:
                service.put_item(s, scope, caldav_actor, f"{ev.uid}.ics", ev.text,
                                 settings=settings.caldav, now=REF)
    db.sync_engine.dispose()
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "--config", str(config), "serve"],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_for(base + "/healthz", proc)
    return Server("calbridge", proc, base, f"/dav/{USER}/calendar/", (USER, PASSWORD))


def start_radicale(workdir: Path, events: list[Event]) -> Server:
    root = workdir / "collections"
    coll = root / "collection-root" / USER / "calendar"
    coll.mkdir(parents=True)
    (coll / ".Radicale.props").write_text(json.dumps(
        {"tag": "VCALENDAR", "C:supported-calendar-component-set": "VEVENT"}))
    for ev in events:
        (coll / f"{ev.uid}.ics").write_text(ev.text, newline="")
    port = free_port()
    config = workdir / "radicale.conf"
    config.write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n"
        "[auth]\ntype = none\n"
        f"[storage]\nfilesystem_folder = {root}\n"
        "[web]\ntype = none\n"
        "[logging]\nlevel = warning\n")
    proc = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(config)],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_for(base + "/", proc)
    return Server("radicale", proc, base, f"/{USER}/calendar/", (USER, PASSWORD))


# --- requests and checks ------------------------------------------------------------------

def week_query() -> str:
    lo, hi = (t.strftime("%Y%m%dT%H%M%SZ") for t in WEEK)
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{lo}" end="{hi}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")


def multiget(hrefs: list[str]) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            + "".join(f"<D:href>{h}</D:href>" for h in hrefs) + "</C:calendar-multiget>")


def sync_body(token: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
            f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/></D:prop></D:sync-collection>")


def responses(text: str) -> list[ET.Element]:
    return ET.fromstring(text).findall(f"{DAV_NS}response")


def uids_in(text: str) -> set[str]:
    found = set()
    for r in responses(text):
        data = r.find(f".//{CAL_NS}calendar-data")
        if data is not None and data.text:
            for line in data.text.splitlines():
                if line.startswith("UID:"):
                    found.add(line[4:].strip())
    return found


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, result


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"WRONG ANSWER: {what}")


def measure(server: Server, events: list[Event], put_count: int) -> dict[str, float]:
    s = server.session()
    cal = server.base + server.calendar
    expected = {e.uid for e in events if e.overlaps(*WEEK)}
    out: dict[str, float] = {}

    def report(body: str, depth: str = "1") -> str:
        r = s.request("REPORT", cal, data=body.encode(),
                      headers={"Depth": depth, "Content-Type": "application/xml"})
        check(r.status_code == 207, f"{server.name} REPORT status {r.status_code}")
        return r.text

    report(week_query())  # warm caches (Radicale builds its item cache here)
    ms, text = timed(lambda: report(week_query()), 15)
    got = uids_in(text)
    check(got == expected, f"{server.name} week query: {len(got)} UIDs, expected "
                           f"{len(expected)}; missing {sorted(expected - got)[:3]}, "
                           f"extra {sorted(got - expected)[:3]}")
    out["week_query_ms"] = ms

    hrefs = [server.calendar + f"{e.uid}.ics" for e in events[::max(1, len(events) // 50)][:50]]
    ms, text = timed(lambda: report(multiget(hrefs)), 15)
    check(len(uids_in(text)) == 50, f"{server.name} multiget returned {len(uids_in(text))}")
    out["multiget50_ms"] = ms

    propfind = ('<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/>'
                "</D:prop></D:propfind>")

    def do_propfind() -> str:
        r = s.request("PROPFIND", cal, data=propfind,
                      headers={"Depth": "1", "Content-Type": "application/xml"})
        check(r.status_code == 207, f"{server.name} PROPFIND {r.status_code}")
        return r.text

    ms, text = timed(do_propfind, 5)
    check(len(responses(text)) == len(events) + 1,
          f"{server.name} PROPFIND listed {len(responses(text)) - 1} of {len(events)}")
    out["propfind_depth1_ms"] = ms

    # sync-collection after 10 edits
    first = ET.fromstring(report(sync_body(""))).find(f"{DAV_NS}sync-token")
    assert first is not None and first.text
    token = first.text
    sync_times = []
    rng = random.Random(7)
    for round_ in range(5):
        edited = rng.sample(events, 10)
        for ev in edited:
            body = render(ev, rng, summary=f"Edited {round_}")
            r = s.put(server.base + server.calendar + f"{ev.uid}.ics", data=body.encode(),
                      headers={"Content-Type": "text/calendar"})
            check(r.status_code in (201, 204), f"{server.name} edit PUT {r.status_code}")
            ev.text = body
        t0 = time.perf_counter()
        text = report(sync_body(token))
        sync_times.append(time.perf_counter() - t0)
        changed = {r.findtext(f"{DAV_NS}href", "").rsplit("/", 1)[-1]
                   for r in responses(text)}
        want = {f"{ev.uid}.ics".replace("@", "%40") for ev in edited}
        want_raw = {f"{ev.uid}.ics" for ev in edited}
        check(want <= changed or want_raw <= changed,
              f"{server.name} sync-collection missed edits: {len(changed)} named")
        new = ET.fromstring(text).find(f"{DAV_NS}sync-token")
        assert new is not None and new.text
        token = new.text
    out["sync_after_10_edits_ms"] = statistics.median(sync_times) * 1000

    # PUT throughput: new events, 8 concurrent clients.
    rng = random.Random(11)
    new_events = make_events(put_count, seed=99)
    for ev in new_events:
        ev.uid = ev.uid.replace("bench-", f"new-{len(events)}-")
        ev.text = render(ev, rng)
    clients = [server.session() for _ in range(8)]

    def put(i: int) -> int:
        ev = new_events[i]
        r = clients[i % 8].put(server.base + server.calendar + f"{ev.uid}.ics",
                               data=ev.text.encode(), headers={"Content-Type": "text/calendar",
                                                               "If-None-Match": "*"})
        return r.status_code

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(put_count)))
    elapsed = time.perf_counter() - t0
    check(all(st == 201 for st in statuses), f"{server.name} PUT statuses {set(statuses)}")
    out["put_per_s"] = put_count / elapsed
    out["peak_memory_mb"] = server.peak_memory_mb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    results: dict[int, dict[str, dict[str, float]]] = {}
    for n in (int(x) for x in args.sizes.split(",")):
        events = make_events(n)
        results[n] = {}
        for name, starter, puts in (("calbridge", start_calbridge, 400),
                                    ("radicale", start_radicale, 24 if n >= 5000 else 80)):
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-{n}-"))
            t0 = time.perf_counter()
            server = starter(workdir, [Event(e.uid, e.kind, e.start, e.end, e.text)
                                       for e in events])
            load = time.perf_counter() - t0
            try:
                results[n][name] = measure(server, [Event(e.uid, e.kind, e.start, e.end, e.text)
                                                    for e in events], puts)
            finally:
                server.stop()
                if not args.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
            results[n][name]["load_s"] = load
            print(f"# {name} @ {n}: done ({load:.1f} s to load)", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    metrics = [("put_per_s", "PUT throughput (/s, 8 clients)", True),
               ("week_query_ms", "one-week calendar-query (ms)", False),
               ("multiget50_ms", "calendar-multiget of 50 (ms)", False),
               ("propfind_depth1_ms", "PROPFIND Depth 1 (ms)", False),
               ("sync_after_10_edits_ms", "sync-collection after 10 edits (ms)", False),
               ("peak_memory_mb", "peak server memory (MB)", False)]
    print(f"CalDAV benchmark ({os.cpu_count()} CPUs); every answer checked")
    for n, by in results.items():
        print(f"\n## {n} events")
        print("| metric | calbridge | Radicale 3.9 files | calbridge advantage |")
        print("|---|---|---|---|")
        for key, label, higher_better in metrics:
            a, b = by["calbridge"][key], by["radicale"][key]
            ratio = a / b if higher_better else b / a
            print(f"| {label} | {a:,.1f} | {b:,.1f} | {ratio:,.1f}× |")


if __name__ == "__main__":
    main()
