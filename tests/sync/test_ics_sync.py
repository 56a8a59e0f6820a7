"""Reading an ICS URL: busy time appears in availability, slots disappear and
come back, an unchanged feed costs a 304, failures keep the last good
snapshot, and one incident sends exactly one notice each way."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from bridge.db.models import ChangeEntry
from tests.conftest import SAMPLES, Tenant, count_rows
from tests.sync.conftest import IcsSource, Slack, Smtp, poll

MON = dt.datetime(2031, 3, 3, tzinfo=dt.UTC)  # a Monday, far from "now" in any test run


async def make_staff(client: Any, tenant: Tenant, email: str = "anna@acme.example",
                     timezone: str = "UTC") -> int:
    resp = await client.post("/api/v1/staff", json={"email": email, "name": "Anna",
                                                     "timezone": timezone},
                             headers=tenant.headers)
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def link_ics(client: Any, tenant: Tenant, staff_id: int, url: str) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/staff/{staff_id}/calendar-links",
                             json={"kind": "ics", "url": url, "label": "Private"},
                             headers=tenant.headers)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def free_starts(client: Any, tenant: Tenant, staff_id: int, day: dt.datetime,
                      **params: str) -> list[str]:
    query = {"staff": str(staff_id), "start": day.isoformat(),
             "end": (day + dt.timedelta(days=1)).isoformat(), "duration": "60",
             "granularity": "60", "working_hours": "09:00-17:00", **params}
    resp = await client.get("/api/v1/availability", params=query, headers=tenant.headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return [s["start"][11:16] for s in body["staff"][0]["slots"]]


async def read_link(client: Any, tenant: Tenant, staff_id: int, link_id: int) -> Any:
    resp = await client.get(f"/api/v1/staff/{staff_id}/calendar-links/{link_id}",
                            headers=tenant.headers)
    return await resp.json()


async def test_slots_disappear_after_external_event_and_reappear_after_removal(
        app_client: Any, tenant: Tenant, ics: IcsSource, monkeypatch: Any) -> None:
    _pin_window(monkeypatch)
    staff = await make_staff(app_client, tenant)
    await link_ics(app_client, tenant, staff, ics.url)
    before = await free_starts(app_client, tenant, staff, MON)
    assert before == ["09:00", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"]

    ics.add("dentist", MON.replace(hour=10, minute=30), MON.replace(hour=12))
    [report] = await poll(app_client)
    assert report.outcome.ok and report.outcome.read_changed
    assert await free_starts(app_client, tenant, staff, MON) == [
        "09:00", "12:00", "13:00", "14:00", "15:00", "16:00"]

    ics.remove("dentist")
    await poll(app_client)
    assert await free_starts(app_client, tenant, staff, MON) == before


async def test_unchanged_feed_is_one_conditional_request(
        app_client: Any, tenant: Tenant, ics: IcsSource, monkeypatch: Any) -> None:
    _pin_window(monkeypatch)
    staff = await make_staff(app_client, tenant)
    await link_ics(app_client, tenant, staff, ics.url)
    ics.add("a", MON.replace(hour=9), MON.replace(hour=10))
    await poll(app_client)
    for _ in range(3):
        [report] = await poll(app_client)
        assert report.outcome.ok and not report.outcome.read_changed
    assert ics.requests == 4 and ics.not_modified == 3
    assert await free_starts(app_client, tenant, staff, MON) == [
        "10:00", "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"]


async def test_transient_failures_keep_the_last_good_snapshot(
        app_client: Any, tenant: Tenant, ics: IcsSource, db: Any, monkeypatch: Any) -> None:
    _pin_window(monkeypatch)
    staff = await make_staff(app_client, tenant)
    link = await link_ics(app_client, tenant, staff, ics.url)
    ics.add("meeting", MON.replace(hour=13), MON.replace(hour=15))
    await poll(app_client)
    assert count_rows(db, "external_busy") == 1
    expected = ["09:00", "10:00", "11:00", "12:00", "15:00", "16:00"]
    ics.add("later", MON.replace(hour=9), MON.replace(hour=10))  # would change it, if read
    for mode in ("500", "timeout", "html", "404"):
        ics.mode = mode
        [report] = await poll(app_client)
        assert not report.outcome.ok, mode
        assert count_rows(db, "external_busy") == 1, mode
        assert await free_starts(app_client, tenant, staff, MON) == expected, mode
    ics.mode = "ok"
    ics.set_raw((ROOT_INVALID / "icalendar_parsing_error_in_UTC_offset.ics").read_text())
    [report] = await poll(app_client)
    assert report.outcome.error is not None and report.outcome.error.kind == "invalid"
    assert count_rows(db, "external_busy") == 1
    data = await read_link(app_client, tenant, staff, link["id"])
    assert data["health"] == "failing" and data["consecutive_failures"] == 5
    assert "not valid iCalendar" in data["last_error"]
    assert "secret-token" not in data["last_error"] and "secret-token" not in data["url"]


async def test_source_that_disappears_and_comes_back_sends_one_notice_each_way(
        app_client: Any, tenant: Tenant, ics: IcsSource, smtp: Smtp, slack: Slack, db: Any,
        monkeypatch: Any) -> None:
    _pin_window(monkeypatch)
    staff = await make_staff(app_client, tenant)
    link = await link_ics(app_client, tenant, staff, ics.url)
    await poll(app_client)
    ics.mode = "404"
    [first] = await poll(app_client)
    assert first.notice is None  # one failure is below the threshold (2)
    for _ in range(4):
        await poll(app_client)
    assert (await read_link(app_client, tenant, staff, link["id"]))["health"] == "failing"
    assert len(smtp.messages) == 1 and len(slack.posts) == 1
    rcpt, msg = smtp.messages[0]
    assert rcpt == ["anna@acme.example"]
    assert "Calendar connection broken: Private" in msg["Subject"]
    assert "secret-token" not in msg.get_payload() and "secret-token" not in slack.posts[0]["text"]
    ics.mode = "ok"
    await poll(app_client)
    await poll(app_client)
    assert len(smtp.messages) == 2 and len(slack.posts) == 2
    assert "restored" in smtp.messages[1][1]["Subject"]
    types = _link_events(db, link["id"])
    assert types == ["calendar_link.created", "calendar_link.failed", "calendar_link.recovered"]


async def test_401_is_auth_failed_at_once(app_client: Any, tenant: Tenant, ics: IcsSource,
                                          smtp: Smtp, db: Any, monkeypatch: Any) -> None:
    from bridge.db.models import AdminUser

    _pin_window(monkeypatch)
    with db.sync_session(write=True) as s:
        s.add(AdminUser(company_id=tenant.company_id, email="boss@acme.example",
                        password_hash="-"))
    staff = await make_staff(app_client, tenant)
    link = await link_ics(app_client, tenant, staff, ics.url)
    ics.mode = "401"
    [report] = await poll(app_client)
    assert report.notice is not None and report.notice.health == "auth_failed"
    assert (await read_link(app_client, tenant, staff, link["id"]))["health"] == "auth_failed"
    await poll(app_client)
    assert len(smtp.messages) == 1
    rcpt, msg = smtp.messages[0]
    assert "password refused" in msg["Subject"]
    assert sorted(rcpt) == ["anna@acme.example", "boss@acme.example"]
    assert (msg["To"], msg["Cc"]) == ("anna@acme.example", "boss@acme.example")


async def test_recurrence_and_dst_in_staff_zone(app_client: Any, tenant: Tenant,
                                                ics: IcsSource, monkeypatch: Any) -> None:
    """A weekly 09:00 Europe/Paris meeting stays at 09:00 local across the
    end of March DST change; one occurrence moved, one excluded."""
    _pin_window(monkeypatch, dt.datetime(2031, 3, 1, tzinfo=dt.UTC))
    staff = await make_staff(app_client, tenant, timezone="Europe/Paris")
    await link_ics(app_client, tenant, staff, ics.url)
    ics.set_raw(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
        "BEGIN:VEVENT\r\nUID:weekly\r\nDTSTAMP:20310101T000000Z\r\n"
        "DTSTART;TZID=Europe/Paris:20310317T090000\r\n"
        "DTEND;TZID=Europe/Paris:20310317T100000\r\nRRULE:FREQ=WEEKLY;COUNT=6\r\n"
        "EXDATE;TZID=Europe/Paris:20310407T090000\r\nSUMMARY:standup\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:weekly\r\nDTSTAMP:20310101T000000Z\r\n"
        "RECURRENCE-ID;TZID=Europe/Paris:20310414T090000\r\n"
        "DTSTART;TZID=Europe/Paris:20310414T140000\r\n"
        "DTEND;TZID=Europe/Paris:20310414T150000\r\nSUMMARY:moved\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:free\r\nDTSTAMP:20310101T000000Z\r\n"
        "DTSTART;TZID=Europe/Paris:20310324T110000\r\n"
        "DTEND;TZID=Europe/Paris:20310324T120000\r\nTRANSP:TRANSPARENT\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:off\r\nDTSTAMP:20310101T000000Z\r\n"
        "DTSTART;TZID=Europe/Paris:20310324T130000\r\n"
        "DTEND;TZID=Europe/Paris:20310324T140000\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:holiday\r\nDTSTAMP:20310101T000000Z\r\n"
        "DTSTART;VALUE=DATE:20310421\r\nDTEND;VALUE=DATE:20310422\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n")
    [report] = await poll(app_client)
    assert report.outcome.ok

    async def busy(day: str) -> list[tuple[str, str]]:
        start = dt.datetime.fromisoformat(day + "T00:00:00+00:00")
        resp = await app_client.get("/api/v1/availability", headers=tenant.headers, params={
            "staff": str(staff), "start": start.isoformat(),
            "end": (start + dt.timedelta(days=1)).isoformat()})
        return [(b["start"][11:16], b["end"][11:16]) for b in
                (await resp.json())["staff"][0]["busy"]]

    assert await busy("2031-03-24") == [("08:00", "09:00")]  # CET: UTC+1; no transparent/cancelled
    assert await busy("2031-03-31") == [("07:00", "08:00")]  # CEST: UTC+2
    assert await busy("2031-04-07") == []  # EXDATE
    assert await busy("2031-04-14") == [("12:00", "13:00")]  # RECURRENCE-ID moved it
    assert await busy("2031-04-21") == [("00:00", "22:00")]  # all-day, local day in UTC terms
    assert await busy("2031-04-28") == []  # COUNT=6 ended


def _link_events(db: Any, link_id: int) -> list[str]:
    with db.sync_session() as s:
        return list(s.execute(select(ChangeEntry.type).where(
            ChangeEntry.entity == "calendar_link", ChangeEntry.entity_id == link_id)
            .order_by(ChangeEntry.seq)).scalars())


def _pin_window(monkeypatch: Any, now: dt.datetime = MON - dt.timedelta(days=1)) -> None:
    """Make the poller's "now" a fixed day, so the busy window covers MON."""
    import bridge.sync.scheduler as scheduler

    monkeypatch.setattr(scheduler, "utcnow", lambda: now)


ROOT_INVALID = SAMPLES / "invalid"


async def test_redirects_are_followed_checked_and_bounded(
        aiohttp_server: Any, app_client: Any, tenant: Tenant, ics: IcsSource, db: Any,
        monkeypatch: Any) -> None:
    from aiohttp import web

    from bridge.sync.sources import SourceError, check_address

    _pin_window(monkeypatch)
    app = web.Application()

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(ics.url)

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def ftp(request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://files.example.com/cal.ics")

    app.router.add_get("/moved.ics", moved)
    app.router.add_get("/loop", loop)
    app.router.add_get("/ftp", ftp)
    server = await aiohttp_server(app)
    staff = await make_staff(app_client, tenant)
    ics.add("x", MON.replace(hour=9), MON.replace(hour=10))
    for path in ("/moved.ics", "/loop", "/ftp"):
        await link_ics(app_client, tenant, staff, str(server.make_url(path)))
    reports = {r.link_id: r.outcome for r in await poll(app_client)}
    outcomes = [reports[k] for k in sorted(reports)]
    assert outcomes[0].ok and outcomes[0].busy is not None and len(outcomes[0].busy) == 1
    assert outcomes[1].error is not None and "redirects too often" in outcomes[1].error.message
    assert outcomes[2].error is not None and "not http(s)" in outcomes[2].error.message
    for private in ("http://127.0.0.1/a.ics", "http://10.1.2.3/a.ics", "http://[::1]/a.ics"):
        try:
            await check_address(private, allow_private=False)
        except SourceError as exc:
            assert exc.kind == "forbidden"
        else:
            raise AssertionError(private)


async def test_a_feed_larger_than_the_limit_keeps_the_snapshot(
        aiohttp_client: Any, tenant: Tenant, ics: IcsSource, db_url: str, tmp_path: Any,
        db: Any, monkeypatch: Any) -> None:
    from bridge.app import create_app
    from tests.conftest import make_settings
    from tests.sync.conftest import SYNC

    _pin_window(monkeypatch)
    client = await aiohttp_client(create_app(make_settings(
        db_url, tmp_path, sync={**SYNC, "max_bytes": 200_000})))
    staff = await make_staff(client, tenant)
    await link_ics(client, tenant, staff, ics.url)
    ics.add("x", MON.replace(hour=9), MON.replace(hour=10))
    await poll(client)
    assert count_rows(db, "external_busy") == 1
    for i in range(1500):  # ~200 kB of events
        ics.add(f"e{i}", MON.replace(hour=11), MON.replace(hour=12))
    [report] = await poll(client)
    assert report.outcome.error is not None
    assert "larger than 200000 bytes" in report.outcome.error.message
    assert count_rows(db, "external_busy") == 1


async def test_busy_window_slides_with_a_daily_full_read(
        app_client: Any, tenant: Tenant, ics: IcsSource, monkeypatch: Any) -> None:
    from sqlalchemy import update

    from bridge.db.models import CalendarLink
    from bridge.keys import DB

    _pin_window(monkeypatch)
    staff = await make_staff(app_client, tenant)
    await link_ics(app_client, tenant, staff, ics.url)
    await poll(app_client)
    [report] = await poll(app_client)
    assert not report.outcome.read_changed and ics.not_modified == 1
    # A day later the window's end is a day short: read in full although unchanged.
    await app_client.app[DB].write(lambda s: s.execute(update(CalendarLink).values(
        window_end=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))))
    [report] = await poll(app_client)
    assert report.outcome.read_changed and ics.not_modified == 1 and ics.requests == 3


async def test_company_slack_webhook_and_no_admin_copies(
        aiohttp_client: Any, tenant: Tenant, ics: IcsSource, smtp: Smtp, slack: Slack,
        db_url: str, tmp_path: Any, db: Any, monkeypatch: Any) -> None:
    from bridge.app import create_app
    from bridge.db.models import AdminUser
    from tests.conftest import make_settings
    from tests.sync.conftest import SYNC

    _pin_window(monkeypatch)
    client = await aiohttp_client(create_app(make_settings(  # no server-wide Slack URL
        db_url, tmp_path, sync=SYNC, smtp={"host": "127.0.0.1", "port": smtp.port})))
    with db.sync_session(write=True) as s:
        s.add(AdminUser(company_id=tenant.company_id, email="boss@acme.example",
                        password_hash="-"))
    resp = await client.patch("/api/v1/calendar-policy", headers=tenant.headers,
                              json={"slack_webhook_url": slack.url, "email_admins": False})
    assert resp.status == 200
    staff = await make_staff(client, tenant)
    await link_ics(client, tenant, staff, ics.url)
    ics.mode = "401"
    await poll(client)
    assert [rcpt for rcpt, _ in smtp.messages] == [["anna@acme.example"]]
    assert len(slack.posts) == 1 and "Calendar connection broken" in slack.posts[0]["text"]


async def test_feed_without_validators_is_not_recomputed_when_unchanged(
        aiohttp_server: Any, app_client: Any, tenant: Tenant, db: Any,
        monkeypatch: Any) -> None:
    from aiohttp import web

    _pin_window(monkeypatch)
    body = {"text": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
                    "BEGIN:VEVENT\r\nUID:a\r\nDTSTAMP:20310101T000000Z\r\n"
                    "DTSTART:20310303T090000Z\r\nDTEND:20310303T100000Z\r\nEND:VEVENT\r\n"
                    "END:VCALENDAR\r\n"}

    async def plain(request: web.Request) -> web.Response:  # no ETag, no Last-Modified
        return web.Response(text=body["text"], content_type="text/calendar")

    app = web.Application()
    app.router.add_get("/plain.ics", plain)
    server = await aiohttp_server(app)
    staff = await make_staff(app_client, tenant)
    await link_ics(app_client, tenant, staff, str(server.make_url("/plain.ics")))
    [first] = await poll(app_client)
    [second] = await poll(app_client)
    assert first.outcome.read_changed and not second.outcome.read_changed
    assert count_rows(db, "external_busy") == 1
    body["text"] = body["text"].replace("T100000Z", "T110000Z")
    [third] = await poll(app_client)
    assert third.outcome.read_changed
    assert await free_starts(app_client, tenant, staff, MON) == [
        "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"]
