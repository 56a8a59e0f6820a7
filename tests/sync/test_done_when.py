"""Done-when of issue 6, end to end on the demo data: a demo staff member
links a stock Radicale calendar and an ICS URL, availability changes when
events are added there, their confirmed appointments appear there, and a
changed password brings exactly one alert email, one Slack message and one
webhook; fixing it, exactly one recovery notice of each."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge.db.engine import Database
from bridge.demo import load_demo
from tests.conftest import make_settings
from tests.sync.conftest import SYNC, IcsSource, Radicale, Slack, Smtp, poll
from tests.sync.test_caldav_sync import _event_ics
from tests.webhooks.conftest import FAST, Receiver, free_port


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """The booking system's signed-webhook receiver (from tests/webhooks)."""
    r = Receiver(free_port())
    await r.start()
    yield r
    await r.stop()


# The demo's few hundred appointments take a while to load; every step here
# also runs on PostgreSQL in the other tests of this folder.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_demo_staff_links_calendars_and_gets_one_notice_per_incident(
        aiohttp_client: Any, db_url: str, tmp_path: Path, radicale: Radicale, ics: IcsSource,
        smtp: Smtp, slack: Slack, receiver: Receiver) -> None:
    settings = make_settings(db_url, tmp_path, sync=SYNC,
                             smtp={"host": "127.0.0.1", "port": smtp.port},
                             alerts={"slack_webhook_url": slack.url}, **FAST)
    db = Database(settings.database)
    info = load_demo(db, settings)
    db.sync_engine.dispose()
    assert any("calendar-link add" in line for line in info["calendar_links"])
    headers = {"Authorization": f"Bearer {info['api_key']}"}
    anna = next(p for p in info["staff"] if p["email"].startswith("anna"))
    client = await aiohttp_client(create_app(settings))

    async def api(method: str, path: str, **kw: Any) -> Any:
        resp = await client.request(method, path, headers=headers, **kw)
        assert resp.status < 300, await resp.text()
        return await resp.json() if resp.status != 204 else None

    hook = await api("POST", "/api/v1/webhooks", json={
        "url": receiver.url, "event_types": ["calendar_link.failed",
                                             "calendar_link.recovered"]})
    receiver.secrets.append(hook["secret"])
    user, password = radicale.add_user()
    cal_url = radicale.make_calendar(user, password, "iCloud")
    base = f"/api/v1/staff/{anna['id']}/calendar-links"
    found = await api("POST", base + "/discover", json={
        "server_url": radicale.url, "username": user, "password": password})
    dav = await api("POST", base, json={
        "kind": "caldav", "server_url": radicale.url, "username": user, "password": password,
        "calendar_url": found["items"][0]["url"], "add_appointments": True, "label": "iCloud"})
    await api("POST", base, json={"kind": "ics", "url": ics.url, "label": "Google"})
    reports = await poll(client)
    assert all(r.outcome.ok for r in reports), [r.outcome.error for r in reports]

    # Her confirmed upcoming appointments are in her own calendar now.
    now = dt.datetime.now(dt.UTC)
    upcoming = (await api("GET", "/api/v1/appointments", params={
        "staff_id": str(anna["id"]), "status": "confirmed",
        "start": (now - dt.timedelta(days=1)).isoformat(), "limit": "1000"}))["items"]
    remote = radicale.calendar(user, password, cal_url).events()
    assert upcoming and sorted(str(e.icalendar_component["UID"]) for e in remote) == sorted(
        a["uid"] for a in upcoming)

    # Events added in either calendar take slots away.
    day = (now + dt.timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    params = {"staff": str(anna["id"]), "start": day.isoformat(),
              "end": (day + dt.timedelta(days=1)).isoformat(), "duration": "30",
              "granularity": "30", "working_hours": "mon-fri 07:00-19:00", "busy": "false"}
    before = {s["start"] for s in (await api("GET", "/api/v1/availability",
                                              params=params))["staff"][0]["slots"]}
    radicale.calendar(user, password, cal_url).save_event(
        _event_ics("yoga", day.replace(hour=6), day.replace(hour=7)))
    ics.add("school-run", day.replace(hour=16), day.replace(hour=17))
    await poll(client)
    after = {s["start"] for s in (await api("GET", "/api/v1/availability",
                                             params=params))["staff"][0]["slots"]}
    gone = sorted(before - after)
    assert after < before and len(gone) == 4, gone  # 06:00-07:00 and 16:00-17:00 UTC

    # The iCloud password is changed: one email, one Slack message, one webhook.
    radicale.set_password(user, "new-app-password")
    for _ in range(4):
        await poll(client)
    await receiver.wait_for(lambda: len(receiver.got) >= 1)
    assert [m[1]["Subject"] for m in smtp.messages] == [
        "Calendar connection broken: iCloud (password refused)"]
    rcpt, msg = smtp.messages[0]
    assert anna["email"] in rcpt and msg["To"] == anna["email"]
    assert "new-app-password" not in msg.get_payload() and password not in msg.get_payload()
    assert len(slack.posts) == 1
    assert receiver.types() == ["calendar_link.failed"]

    # Fixed with the new password: one recovery notice of each kind.
    await api("PATCH", f"{base}/{dav['id']}", json={"password": "new-app-password"})
    for _ in range(3):
        await poll(client)
    await receiver.wait_for(lambda: len(receiver.got) >= 2)
    assert len(smtp.messages) == 2 and "restored" in smtp.messages[1][1]["Subject"]
    assert len(slack.posts) == 2
    assert receiver.types() == ["calendar_link.failed", "calendar_link.recovered"]
