"""A CalDAV account on a stock Radicale: discovery, busy time read with a
sync-token check, confirmed appointments written out idempotently and
following reschedules and cancellations, and a changed password."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, update

from bridge.db.models import CalendarLink, CalendarPush
from bridge.keys import DB
from tests.conftest import Tenant, count_rows
from tests.sync.conftest import Radicale, Slack, Smtp, poll, tick, vevent
from tests.sync.test_ics_sync import MON, _link_events, _pin_window, free_starts, make_staff


def _event_ics(uid: str, start: dt.datetime, end: dt.datetime) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
            + vevent(uid, start, end) + "END:VCALENDAR\r\n")


async def link_caldav(client: Any, tenant: Tenant, staff: int, radicale: Radicale, user: str,
                      password: str, calendar_url: str, **extra: Any) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/staff/{staff}/calendar-links", headers=tenant.headers,
                             json={"kind": "caldav", "server_url": radicale.url,
                                   "username": user, "password": password,
                                   "calendar_url": calendar_url, "label": "iCloud", **extra})
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_discover_lists_the_accounts_calendars(app_client: Any, tenant: Tenant,
                                                     radicale: Radicale, db: Any) -> None:
    user, password = radicale.add_user()
    url = radicale.make_calendar(user, password, "Work")
    staff = await make_staff(app_client, tenant)
    path = f"/api/v1/staff/{staff}/calendar-links/discover"
    resp = await app_client.post(path, headers=tenant.headers, json={
        "server_url": radicale.url, "username": user, "password": password})
    assert resp.status == 200, await resp.text()
    assert [(c["url"], c["name"]) for c in (await resp.json())["items"]] == [(url, "Work")]
    resp = await app_client.post(path, headers=tenant.headers, json={
        "server_url": radicale.url, "username": user, "password": "wrong"})
    assert resp.status == 401
    assert (await resp.json())["field"] == "password"
    assert count_rows(db, "calendar_links") == 0


async def test_external_events_are_busy_and_unchanged_calendar_is_not_reread(
        app_client: Any, tenant: Tenant, radicale: Radicale, monkeypatch: Any) -> None:
    _pin_window(monkeypatch)
    user, password = radicale.add_user()
    url = radicale.make_calendar(user, password)
    staff = await make_staff(app_client, tenant)
    await link_caldav(app_client, tenant, staff, radicale, user, password, url)
    calendar = radicale.calendar(user, password, url)
    calendar.save_event(_event_ics("gym", MON.replace(hour=9), MON.replace(hour=11)))
    [report] = await poll(app_client)
    assert report.outcome.ok and report.outcome.read_changed, report.outcome.error
    assert await free_starts(app_client, tenant, staff, MON) == [
        "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"]
    [report] = await poll(app_client)
    assert report.outcome.ok and not report.outcome.read_changed  # sync-token unchanged
    # Later changes are read incrementally (RFC 6578 sync-collection): only what changed.
    calendar.save_event(_event_ics("lunch", MON.replace(hour=12), MON.replace(hour=13)))
    [report] = await poll(app_client)
    assert report.outcome.incremental and report.outcome.busy_by_href is not None
    assert len(report.outcome.busy_by_href) == 1
    assert await free_starts(app_client, tenant, staff, MON) == [
        "11:00", "13:00", "14:00", "15:00", "16:00"]
    calendar.event_by_uid("gym").delete()
    [report] = await poll(app_client)
    assert report.outcome.incremental and len(report.outcome.deleted) == 1
    assert await free_starts(app_client, tenant, staff, MON) == [
        "09:00", "10:00", "11:00", "13:00", "14:00", "15:00", "16:00"]
    calendar.event_by_uid("lunch").delete()
    await poll(app_client)
    assert len(await free_starts(app_client, tenant, staff, MON)) == 8
    # A token the server no longer knows: the window is read in full instead.
    await app_client.app[DB].write(lambda s: s.execute(update(CalendarLink).values(
        sync_token="http://radicale.org/ns/sync/forgotten")))
    calendar.save_event(_event_ics("tea", MON.replace(hour=15), MON.replace(hour=16)))
    [report] = await poll(app_client)
    assert report.outcome.ok and report.outcome.read_changed and not report.outcome.incremental
    assert len(await free_starts(app_client, tenant, staff, MON)) == 7


async def test_confirmed_appointments_are_written_and_follow_changes(
        app_client: Any, tenant: Tenant, radicale: Radicale, monkeypatch: Any) -> None:
    _pin_window(monkeypatch)
    user, password = radicale.add_user()
    url = radicale.make_calendar(user, password)
    staff = await make_staff(app_client, tenant)
    link = await link_caldav(app_client, tenant, staff, radicale, user, password, url,
                             add_appointments=True)
    resp = await app_client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": staff, "start": "2031-03-03T10:00:00Z", "end": "2031-03-03T11:00:00Z",
        "service_name": "Check-up", "customer_name": "Léa"})
    appt = await resp.json()
    await poll(app_client)
    calendar = radicale.calendar(user, password, url)

    def remote() -> list[tuple[str, str, str]]:
        out = []
        for obj in calendar.events():
            ev = obj.icalendar_component
            out.append((str(ev["UID"]), ev.decoded("DTSTART").isoformat(), str(ev["SUMMARY"])))
        return out

    assert remote() == [(appt["uid"], "2031-03-03T10:00:00+00:00", "Check-up – Léa")]
    # Written out, and read back, it does not count twice (nor keep its old time).
    await poll(app_client)
    assert await free_starts(app_client, tenant, staff, MON) == [
        "09:00", "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"]

    await app_client.patch(f"/api/v1/appointments/{appt['id']}", headers=tenant.headers,
                           json={"start": "2031-03-03T14:00:00Z", "end": "2031-03-03T15:00:00Z"})
    await tick(app_client)
    assert remote() == [(appt["uid"], "2031-03-03T14:00:00+00:00", "Check-up – Léa")]
    await poll(app_client)
    assert await free_starts(app_client, tenant, staff, MON) == [
        "09:00", "10:00", "11:00", "12:00", "13:00", "15:00", "16:00"]

    # A retry from scratch (lost bookkeeping) writes the same object again, no duplicate.
    def forget(s: Any) -> None:
        s.execute(delete(CalendarPush))
        s.execute(update(CalendarLink).values(push_cursor=None))

    await app_client.app[DB].write(forget)
    await tick(app_client)
    assert len(remote()) == 1

    # Given to a colleague: it leaves this calendar; given back, it returns.
    other = await make_staff(app_client, tenant, "ben@acme.example")
    for owner, expected in ((other, 0), (staff, 1)):
        resp = await app_client.patch(f"/api/v1/appointments/{appt['id']}",
                                      headers=tenant.headers, json={"staff_id": owner})
        assert resp.status == 200
        await tick(app_client)
        assert len(remote()) == expected

    await app_client.post(f"/api/v1/appointments/{appt['id']}/cancel", headers=tenant.headers)
    await tick(app_client)
    assert remote() == []
    data = await (await app_client.get(f"/api/v1/staff/{staff}/calendar-links/{link['id']}",
                                       headers=tenant.headers)).json()
    assert data["health"] == "ok" and data["push_error"] is None


async def test_changed_password_alerts_once_and_recovers_once(
        app_client: Any, tenant: Tenant, radicale: Radicale, smtp: Smtp, slack: Slack, db: Any,
        monkeypatch: Any) -> None:
    _pin_window(monkeypatch)
    user, password = radicale.add_user()
    url = radicale.make_calendar(user, password)
    staff = await make_staff(app_client, tenant)
    link = await link_caldav(app_client, tenant, staff, radicale, user, password, url)
    await poll(app_client)
    radicale.set_password(user, "rotated-password")
    for _ in range(3):
        await poll(app_client)
    path = f"/api/v1/staff/{staff}/calendar-links/{link['id']}"
    data = await (await app_client.get(path, headers=tenant.headers)).json()
    assert data["health"] == "auth_failed"
    assert "refused the username or password" in data["last_error"]
    assert len(smtp.messages) == 1 and len(slack.posts) == 1
    assert "password refused" in smtp.messages[0][1]["Subject"]

    resp = await app_client.patch(path, headers={**tenant.headers, "If-Match": '"v1"'},
                                  json={"password": "rotated-password"})
    assert resp.status == 200
    assert "rotated-password" not in await resp.text()
    await tick(app_client)  # the update made it due at once
    await poll(app_client)
    data = await (await app_client.get(path, headers=tenant.headers)).json()
    assert data["health"] == "ok"
    assert len(smtp.messages) == 2 and len(slack.posts) == 2
    assert _link_events(db, link["id"]) == ["calendar_link.created", "calendar_link.failed",
                                            "calendar_link.updated", "calendar_link.recovered"]


async def test_write_only_link_is_idle_until_an_appointment_changes(
        app_client: Any, tenant: Tenant, radicale: Radicale) -> None:
    user, password = radicale.add_user()
    url = radicale.make_calendar(user, password)
    staff = await make_staff(app_client, tenant)
    await link_caldav(app_client, tenant, staff, radicale, user, password, url,
                      check_conflicts=False, add_appointments=True)
    [first] = await tick(app_client)
    assert first.outcome.ok and first.pushed == 0
    assert await tick(app_client) == []  # nothing changed: nothing to do, not even a claim
    await app_client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": staff, "start": "2031-03-04T10:00:00Z", "end": "2031-03-04T11:00:00Z"})
    [report] = await tick(app_client)
    assert report.pushed == 1 and not report.outcome.read_changed
    assert len(radicale.calendar(user, password, url).events()) == 1
    assert await tick(app_client) == []


async def test_moving_the_link_to_another_calendar_writes_appointments_there(
        app_client: Any, tenant: Tenant, radicale: Radicale) -> None:
    user, password = radicale.add_user()
    first = radicale.make_calendar(user, password, "First")
    second = radicale.make_calendar(user, password, "Second")
    staff = await make_staff(app_client, tenant)
    link = await link_caldav(app_client, tenant, staff, radicale, user, password, first,
                             check_conflicts=False, add_appointments=True)
    await app_client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": staff, "start": "2031-03-04T10:00:00Z", "end": "2031-03-04T11:00:00Z"})
    await tick(app_client)
    resp = await app_client.patch(f"/api/v1/staff/{staff}/calendar-links/{link['id']}",
                                  headers=tenant.headers, json={"calendar_url": second})
    assert resp.status == 200
    await tick(app_client)
    for url in (first, second):
        assert len(radicale.calendar(user, password, url).events()) == 1
