"""Every feed the demo produces, read by three independent parsers.

`icalendar` 7 (with recurring-ical-events), `ical` (the strict parser Home
Assistant uses) and `ical.js` (Thunderbird's, run with node) must parse each
feed without an error or a warning, and agree on every occurrence: UID,
start and end instant (dates for all-day events) and summary. Blocked time
with a weekly RRULE, an EXDATE and a moved occurrence, in a zone crossing a
DST change, checks that recurrence and time zones come out the same.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from ical.calendar_stream import IcsCalendarStream
from sqlalchemy import select

from bridge.app import create_app
from bridge.config import Settings
from bridge.db.engine import Database
from bridge.db.models import Company, Staff
from bridge.demo import load_demo
from bridge.feeds import service
from tests.feeds.conftest import TODAY, insert_blocked

ICALJS = Path(__file__).parent / "icaljs"
START = dt.datetime.combine(TODAY - dt.timedelta(days=60), dt.time(), dt.UTC)
END = dt.datetime.combine(TODAY + dt.timedelta(days=400), dt.time(), dt.UTC)

Occurrence = tuple[str, str, str, str]


@pytest.fixture(scope="session")
def node_parser() -> Path:
    """ical.js installed from the npm registry (`npm ci`, as `make test` does)."""
    node = shutil.which("node")
    assert node, "node is needed for the ical.js check (apt-get install nodejs npm)"
    if not (ICALJS / "node_modules" / "ical.js").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=ICALJS,
                       check=True, timeout=300)
    return ICALJS / "check.mjs"


def _fmt(value: dt.date | dt.datetime) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


def with_icalendar(text: str) -> list[Occurrence]:
    cal = icalendar.Calendar.from_ical(text)
    found = []
    for event in recurring_ical_events.of(cal).between(START, END):
        found.append((str(event["UID"]), _fmt(event.decoded("DTSTART")),
                      _fmt(event.decoded("DTEND")), str(event["SUMMARY"])))
    return sorted(found)


def with_ical(text: str) -> list[Occurrence]:
    cal = IcsCalendarStream.calendar_from_ics(text)
    found = []
    for event in cal.timeline_tz(ZoneInfo("UTC")).overlapping(START, END):
        found.append((str(event.uid), _fmt(event.start), _fmt(event.end), str(event.summary)))
    return sorted(found)


def with_icaljs(script: Path, files: list[Path]) -> dict[str, list[Occurrence]]:
    out = subprocess.run(["node", str(script), _fmt(START), _fmt(END), *map(str, files)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {k: sorted(tuple(o) for o in v) for k, v in json.loads(out.stdout).items()}


def add_blocked_time(db: Database, company_id: int, staff_id: int, zone: str) -> None:
    # Starts 3 weeks before the last Sunday of March or October, whichever is
    # next, so the weekly series crosses a DST change inside the window.
    year = TODAY.year + (1 if TODAY.month >= 10 else 0)
    month = 3 if TODAY < dt.date(year, 3, 20) or TODAY.month >= 10 else 10
    change = max(d for d in (dt.date(year, month, day) for day in range(25, 32))
                 if d.weekday() == 6)
    start = dt.datetime.combine(change - dt.timedelta(weeks=3), dt.time(12, 30), ZoneInfo(zone))
    moved = start + dt.timedelta(weeks=1)
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
        "BEGIN:VEVENT\r\nUID:lunch@client\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID={zone}:{start:%Y%m%dT%H%M%S}\r\n"
        f"DTEND;TZID={zone}:{start + dt.timedelta(hours=1):%Y%m%dT%H%M%S}\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=8\r\n"
        f"EXDATE;TZID={zone}:{start + dt.timedelta(weeks=2):%Y%m%dT%H%M%S}\r\n"
        "SUMMARY:Lunch\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:lunch@client\r\nDTSTAMP:20260101T000000Z\r\n"
        f"RECURRENCE-ID;TZID={zone}:{moved:%Y%m%dT%H%M%S}\r\n"
        f"DTSTART;TZID={zone}:{moved + dt.timedelta(hours=2):%Y%m%dT%H%M%S}\r\n"
        f"DTEND;TZID={zone}:{moved + dt.timedelta(hours=3):%Y%m%dT%H%M%S}\r\n"
        "SUMMARY:Lunch, later\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )
    insert_blocked(db, company_id, staff_id, text, start.astimezone(dt.UTC),
                   (start + dt.timedelta(weeks=8)).astimezone(dt.UTC), uid=f"lunch-{staff_id}")


async def test_demo_feeds_parse_the_same_in_three_parsers(
    db: Database, settings: Settings, aiohttp_client: Any, tmp_path: Path, node_parser: Path
) -> None:
    info = load_demo(db, settings)
    with db.sync_session() as s:
        company = s.execute(select(Company).where(Company.slug == info["company"])).scalar_one()
        staff = {p.timezone: p.id for p in s.execute(select(Staff)).scalars()}
    add_blocked_time(db, company.id, staff["Europe/Paris"], "Europe/Paris")
    add_blocked_time(db, company.id, staff["America/New_York"], "America/New_York")

    client = await aiohttp_client(create_app(settings))
    files: list[Path] = []
    for n, line in enumerate(info["feeds"]):
        path = "/feeds/" + line.rsplit("/feeds/", 1)[1]
        resp = await client.get(path)
        assert resp.status == 200
        file = tmp_path / f"feed{n}.ics"
        file.write_bytes(await resp.read())
        files.append(file)
    by_js = with_icaljs(node_parser, files)
    recurring_seen = 0
    for file in files:
        text = file.read_text()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            a = with_icalendar(text)
            b = with_ical(text)
        c = by_js[str(file)]
        assert a, file
        assert a == b, f"icalendar and ical disagree on {file.name}"
        assert a == c, f"icalendar and ical.js disagree on {file.name}"
        if "Lunch" in text or "lunch" in text:
            raise AssertionError("blocked-time details leaked into a feed")
        uids = [o[0] for o in a]
        recurring_seen += sum(1 for u in set(uids) if uids.count(u) > 1)
    assert recurring_seen >= 4  # blocked-time series in group and company feeds


def test_links_from_the_service_match_the_demo(db: Database, settings: Settings) -> None:
    info = load_demo(db, settings)
    with db.sync_session() as s:
        company = s.execute(select(Company).where(Company.slug == info["company"])).scalar_one()
        links = service.list_feeds(s, company.id)
        urls = {service.link_json(s, link, settings.secret(), settings.base_url)["urls"]["https"]
                for link in links}
    assert {line.rsplit(": ", 1)[1] for line in info["feeds"]} == urls
