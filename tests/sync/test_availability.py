"""GET /api/v1/availability: every bad parameter a 422, appointments and
external busy merged, any-of / all-of for a group, working hours in each
person's zone, and the failure policy (keep_booking / stop_booking)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from bridge.domain.busy import parse_working_hours
from bridge.errors import Invalid
from tests.conftest import Tenant
from tests.sync.conftest import IcsSource, poll
from tests.sync.test_ics_sync import MON, _pin_window, free_starts, link_ics, make_staff


async def test_bad_parameters_get_a_problem_naming_them(app_client: Any, tenant: Tenant) -> None:
    staff = await make_staff(app_client, tenant)
    ok = {"staff": str(staff), "start": "2031-03-03T00:00:00Z", "end": "2031-03-04T00:00:00Z"}
    cases = [
        ({"staff": str(staff), "end": ok["end"]}, "start"),
        ({"staff": str(staff), "start": ok["start"]}, "end"),
        ({**ok, "start": "tomorrow"}, "start"),
        ({**ok, "start": "2031-03-03T00:00:00"}, "start"),
        ({**ok, "end": "2031-03-02T00:00:00Z"}, "end"),
        ({**ok, "end": "2031-06-03T00:00:00Z"}, "end"),
        ({"start": ok["start"], "end": ok["end"]}, "staff"),
        ({**ok, "staff": "1,x"}, "staff"),
        ({**ok, "group": "abc"}, "group"),
        ({**ok, "duration": "0"}, "duration"),
        ({**ok, "duration": "ten"}, "duration"),
        ({**ok, "granularity": "5000"}, "granularity"),
        ({**ok, "working_hours": "mon-fry 09:00-17:00"}, "working_hours"),
        ({**ok, "working_hours": "mon 17:00-09:00"}, "working_hours"),
        ({**ok, "busy": "maybe"}, "busy"),
        ({**ok, "colour": "red"}, "colour"),
    ]
    for params, field in cases:
        resp = await app_client.get("/api/v1/availability", params=params,
                                    headers=tenant.headers)
        assert resp.status == 422, params
        assert (await resp.json())["field"] == field, params
    resp = await app_client.get("/api/v1/availability", params={**ok, "staff": "999"},
                                headers=tenant.headers)
    assert resp.status == 404
    resp = await app_client.get("/api/v1/availability", params={**ok, "group": "999"},
                                headers=tenant.headers)
    assert resp.status == 404


async def test_group_any_of_and_all_of(app_client: Any, tenant: Tenant) -> None:
    resp = await app_client.post("/api/v1/groups", json={"slug": "physio", "name": "Physio"},
                                 headers=tenant.headers)
    group = (await resp.json())["id"]
    paris = await make_staff(app_client, tenant, "p@acme.example", "Europe/Paris")
    london = await make_staff(app_client, tenant, "l@acme.example", "Europe/London")
    for sid in (paris, london):
        await app_client.put(f"/api/v1/groups/{group}/members/{sid}", headers=tenant.headers)
    await app_client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": paris, "start": "2031-03-03T09:00:00Z", "end": "2031-03-03T10:00:00Z"})
    await app_client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": london, "start": "2031-03-03T12:00:00Z", "end": "2031-03-03T13:00:00Z",
        "status": "cancelled"})
    resp = await app_client.get("/api/v1/availability", headers=tenant.headers, params={
        "group": str(group), "start": "2031-03-03T00:00:00Z", "end": "2031-03-04T00:00:00Z",
        "duration": "60", "granularity": "60", "working_hours": "mon-fri 09:00-12:00"})
    body = await resp.json()
    # Paris works 08:00-11:00 UTC, London 09:00-12:00 UTC (winter time).
    by_staff = {p["staff_id"]: [s["start"][11:16] for s in p["slots"]] for p in body["staff"]}
    assert by_staff == {paris: ["08:00", "10:00"], london: ["09:00", "10:00", "11:00"]}
    assert [(s["start"][11:16], s["staff_ids"]) for s in body["any_of"]] == [
        ("08:00", [paris]), ("09:00", [london]), ("10:00", [paris, london]),
        ("11:00", [london])]
    assert [s["start"][11:16] for s in body["all_of"]] == ["10:00"]
    assert body["degraded"] is False
    assert body["staff"][0]["busy"] == [{"start": "2031-03-03T09:00:00Z",
                                         "end": "2031-03-03T10:00:00Z"}]


async def test_failing_link_degrades_and_stop_booking_offers_nothing(
        app_client: Any, tenant: Tenant, ics: IcsSource, monkeypatch: Any) -> None:
    _pin_window(monkeypatch)
    staff = await make_staff(app_client, tenant)
    link = await link_ics(app_client, tenant, staff, ics.url)
    ics.add("lunch", MON.replace(hour=12), MON.replace(hour=13))
    await poll(app_client)
    ics.mode = "500"
    await poll(app_client)
    await poll(app_client)  # failure_threshold = 2

    async def answer() -> Any:
        resp = await app_client.get("/api/v1/availability", headers=tenant.headers, params={
            "staff": str(staff), "start": MON.isoformat(),
            "end": (MON + dt.timedelta(days=1)).isoformat(), "duration": "60",
            "granularity": "60", "working_hours": "09:00-17:00"})
        return await resp.json()

    body = await answer()
    assert body["degraded"] is True
    [person] = body["staff"]
    assert person["failing_links"][0]["link_id"] == link["id"]
    assert person["failing_links"][0]["health"] == "failing"
    # keep_booking: still offered, from the last good snapshot (12:00 stays busy)
    assert [s["start"][11:16] for s in person["slots"]] == [
        "09:00", "10:00", "11:00", "13:00", "14:00", "15:00", "16:00"]
    await app_client.patch("/api/v1/calendar-policy", headers=tenant.headers,
                           json={"on_calendar_failure": "stop_booking"})
    body = await answer()
    assert body["staff"][0]["slots"] == [] and body["any_of"] == []
    assert "stop_booking" in body["staff"][0]["reason"]
    ics.mode = "ok"
    await poll(app_client)
    body = await answer()
    assert body["degraded"] is False and len(body["staff"][0]["slots"]) == 7
    assert await free_starts(app_client, tenant, staff, MON, busy="false") == [
        "09:00", "10:00", "11:00", "13:00", "14:00", "15:00", "16:00"]


async def test_working_hours_follow_local_time_across_dst(app_client: Any,
                                                          tenant: Tenant) -> None:
    staff = await make_staff(app_client, tenant, timezone="America/New_York")
    # US DST starts on Sunday 2031-03-09: 09:00 local is 14:00 UTC before, 13:00 after.
    resp = await app_client.get("/api/v1/availability", headers=tenant.headers, params={
        "staff": str(staff), "start": "2031-03-07T00:00:00Z", "end": "2031-03-12T00:00:00Z",
        "duration": "60", "granularity": "60", "working_hours": "mon-fri 09:00-10:00"})
    starts = [s["start"] for s in (await resp.json())["staff"][0]["slots"]]
    assert starts == ["2031-03-07T14:00:00Z", "2031-03-10T13:00:00Z", "2031-03-11T13:00:00Z"]


def test_working_hours_syntax() -> None:
    hours = parse_working_hours("mon-fri 09:00-12:00 13:00-17:00, sat 10:00-24:00")
    assert hours[0] == [(dt.time(9), dt.time(12)), (dt.time(13), dt.time(17))]
    assert hours[5] == [(dt.time(10), None)] and hours[6] == []
    assert parse_working_hours("fri-mon 08:00-09:00")[6] == [(dt.time(8), dt.time(9))]
    assert all(v == [(dt.time(0), None)] for v in parse_working_hours("always").values())
    for bad in ("", "mon", "09:00", "25:00-26:00", "mon 09:60-10:00", "xyz 09:00-10:00",
                "mon 09:00-24:30"):
        with pytest.raises(Invalid):
            parse_working_hours(bad)


async def test_free_busy_answer_merges_every_source(app_client: Any, tenant: Tenant,
                                                    ics: IcsSource, db: Any,
                                                    monkeypatch: Any) -> None:
    import icalendar

    from bridge.availability.service import freebusy_vcalendar

    _pin_window(monkeypatch)
    staff = await make_staff(app_client, tenant)
    await link_ics(app_client, tenant, staff, ics.url)
    ics.add("gym", MON.replace(hour=8), MON.replace(hour=9, minute=30))
    await poll(app_client)
    await app_client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": staff, "start": "2031-03-03T09:00:00Z", "end": "2031-03-03T10:00:00Z"})
    await app_client.post("/api/v1/appointments", headers=tenant.headers, json={
        "staff_id": staff, "start": "2031-03-03T14:00:00Z", "end": "2031-03-03T15:00:00Z"})
    with db.sync_session() as s:
        text = freebusy_vcalendar(s, staff, MON, MON + dt.timedelta(days=1))
    cal = icalendar.Calendar.from_ical(text)
    [fb] = cal.walk("VFREEBUSY")
    periods = [(p[0].strftime("%H:%M"), p[1].strftime("%H:%M"))
               for p in (v.dt for v in fb.get("FREEBUSY"))]
    assert periods == [("08:00", "10:00"), ("14:00", "15:00")]
