"""Appointments through the API: create, read, list with filters, update with
If-Match, cancel, idempotent upsert by external_id; every bad input is a
problem response that writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Tenant, count_rows

SLOT = {"start": "2026-05-04T09:00:00+02:00", "end": "2026-05-04T09:45:00+02:00"}


@pytest.fixture
async def staff_id(client: Any, tenant: Tenant) -> int:
    resp = await client.post("/api/v1/staff", json={"email": "anna@example.com", "name": "Anna",
                                                     "timezone": "Europe/Paris"},
                             headers=tenant.headers)
    return int((await resp.json())["id"])


async def create(client: Any, tenant: Tenant, **body: Any) -> tuple[Any, Any]:
    resp = await client.post("/api/v1/appointments", json=body, headers=tenant.headers)
    return resp, await resp.json()


async def test_create_and_read_appointment(client: Any, tenant: Tenant, staff_id: int) -> None:
    resp, appt = await create(client, tenant, staff_id=staff_id, service_name="Massage",
                              customer_name="Léa", external_id="bk-1", **SLOT)
    assert resp.status == 201
    assert resp.headers["ETag"] == f'"{appt["etag"]}"'
    assert appt["start"] == "2026-05-04T09:00:00+02:00"
    assert appt["timezone"] == "Europe/Paris"
    assert appt["status"] == "confirmed"
    assert appt["sequence"] == 0
    assert appt["uid"].endswith("@calbridge")
    assert appt["last_changed_by"]["source"] == "api"
    resp = await client.get(f"/api/v1/appointments/{appt['id']}", headers=tenant.headers)
    assert resp.headers["ETag"] == f'"{appt["etag"]}"'
    assert (await resp.json())["customer_name"] == "Léa"
    resp = await client.get("/api/v1/appointments/by-external-id/bk-1", headers=tenant.headers)
    assert (await resp.json())["id"] == appt["id"]


async def test_naive_times_are_read_in_the_appointment_zone(client: Any, tenant: Tenant,
                                                             staff_id: int) -> None:
    _, appt = await create(client, tenant, staff_id=staff_id, timezone="America/New_York",
                           start="2026-07-01T10:00:00", end="2026-07-01T11:00:00")
    assert appt["start"] == "2026-07-01T10:00:00-04:00"


async def test_all_day_appointment(client: Any, tenant: Tenant, staff_id: int) -> None:
    resp, appt = await create(client, tenant, staff_id=staff_id, all_day=True,
                              start="2026-05-04", end="2026-05-06")
    assert resp.status == 201
    assert (appt["start"], appt["end"], appt["all_day"]) == ("2026-05-04", "2026-05-06", True)


@pytest.mark.parametrize(("body", "field"), [
    ({"start": "2026-05-04T10:00:00+02:00", "end": "2026-05-04T09:00:00+02:00"}, "end"),
    ({"start": "2026-05-04T10:00:00+02:00", "end": "2026-05-04T10:00:00+02:00"}, "end"),
    ({"start": "tomorrow", "end": "2026-05-04T10:00:00+02:00"}, "start"),
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"status": "maybe"}, "status"),
    ({"colour": "red"}, "colour"),
    ({"customer_email": "nope"}, "customer_email"),
    ({"meeting_url": "javascript:alert(1)"}, "meeting_url"),
    ({"notes": 12}, "notes"),
    ({"all_day": "yes"}, "all_day"),
    ({"all_day": True, "start": "2026-05-04T10:00:00+02:00", "end": "2026-05-05"}, "start"),
    ({"service_name": "x" * 201}, "service_name"),
    ({"staff_id": "1"}, "staff_id"),
    ({"staff_id": 999_999}, "staff_id"),
    ({"start": "2026-01-01T10:00:00+02:00", "end": "2028-01-01T10:00:00+02:00"}, "end"),
])
async def test_invalid_appointments_write_nothing(client: Any, tenant: Tenant, staff_id: int,
                                                  db: Any, body: dict[str, Any], field: str) -> None:
    full = {"staff_id": staff_id, **SLOT, **body}
    resp, problem = await create(client, tenant, **full)
    assert resp.status in (404, 422)
    assert resp.content_type == "application/problem+json"
    assert problem["field"] == field
    assert count_rows(db, "appointments") == 0
    assert count_rows(db, "change_log") == 3  # company, api key, staff: nothing more


async def test_duplicate_external_id_is_a_conflict(client: Any, tenant: Tenant, staff_id: int,
                                                   db: Any) -> None:
    await create(client, tenant, staff_id=staff_id, external_id="bk-1", **SLOT)
    resp, problem = await create(client, tenant, staff_id=staff_id, external_id="bk-1", **SLOT)
    assert resp.status == 409 and problem["field"] == "external_id"
    assert count_rows(db, "appointments") == 1


async def test_reschedule_raises_sequence_and_etag(client: Any, tenant: Tenant, staff_id: int) -> None:
    _, appt = await create(client, tenant, staff_id=staff_id, **SLOT)
    resp = await client.patch(f"/api/v1/appointments/{appt['id']}",
                              json={"start": "2026-05-04T11:00:00+02:00",
                                    "end": "2026-05-04T11:45:00+02:00"},
                              headers={**tenant.headers, "If-Match": f'"{appt["etag"]}"'})
    moved = await resp.json()
    assert resp.status == 200
    assert moved["sequence"] == 1 and moved["version"] == 2
    assert moved["etag"] != appt["etag"]
    # notes are not a material change: version moves, SEQUENCE does not
    resp = await client.patch(f"/api/v1/appointments/{appt['id']}", json={"notes": "bring x-ray"},
                              headers=tenant.headers)
    noted = await resp.json()
    assert (noted["sequence"], noted["version"]) == (1, 3)
    # a save that changes nothing changes nothing
    resp = await client.patch(f"/api/v1/appointments/{appt['id']}", json={"notes": "bring x-ray"},
                              headers=tenant.headers)
    same = await resp.json()
    assert (same["sequence"], same["version"], same["etag"]) == (1, 3, noted["etag"])


async def test_stale_if_match_is_412_and_changes_nothing(client: Any, tenant: Tenant,
                                                         staff_id: int) -> None:
    _, appt = await create(client, tenant, staff_id=staff_id, **SLOT)
    stale = {**tenant.headers, "If-Match": f'"{appt["etag"]}"'}
    await client.patch(f"/api/v1/appointments/{appt['id']}", json={"notes": "x"}, headers=stale)
    resp = await client.patch(f"/api/v1/appointments/{appt['id']}", json={"notes": "y"}, headers=stale)
    assert resp.status == 412
    resp = await client.post(f"/api/v1/appointments/{appt['id']}/cancel", headers=stale)
    assert resp.status == 412
    resp = await client.put("/api/v1/appointments/by-external-id/none", json={**SLOT, "staff_id": staff_id},
                            headers=stale)
    assert resp.status == 412
    resp = await client.patch(f"/api/v1/appointments/{appt['id']}", json={"notes": "y"},
                              headers={**tenant.headers, "If-Match": 'W/"weak"'})
    assert resp.status == 412
    resp = await client.get(f"/api/v1/appointments/{appt['id']}", headers=tenant.headers)
    current = await resp.json()
    assert (current["notes"], current["status"]) == ("x", "confirmed")


async def test_cancel(client: Any, tenant: Tenant, staff_id: int) -> None:
    _, appt = await create(client, tenant, staff_id=staff_id, **SLOT)
    resp = await client.post(f"/api/v1/appointments/{appt['id']}/cancel", headers=tenant.headers)
    cancelled = await resp.json()
    assert cancelled["status"] == "cancelled" and cancelled["sequence"] == 1
    resp = await client.get("/api/v1/appointments?status=cancelled", headers=tenant.headers)
    assert [a["id"] for a in (await resp.json())["items"]] == [appt["id"]]


async def test_upsert_by_external_id_is_idempotent(client: Any, tenant: Tenant, staff_id: int,
                                                   db: Any) -> None:
    body = {"staff_id": staff_id, "service_name": "Cut", **SLOT}
    resp = await client.put("/api/v1/appointments/by-external-id/bk-7", json=body, headers=tenant.headers)
    first = await resp.json()
    assert resp.status == 201
    resp = await client.put("/api/v1/appointments/by-external-id/bk-7", json=body, headers=tenant.headers)
    again = await resp.json()
    assert resp.status == 200
    assert (again["id"], again["etag"], again["version"]) == (first["id"], first["etag"], 1)
    resp = await client.put("/api/v1/appointments/by-external-id/bk-7",
                            json={**body, "service_name": "Colour"},
                            headers={**tenant.headers, "If-Match": f'"{first["etag"]}"'})
    assert (await resp.json())["service_name"] == "Colour"
    resp = await client.put("/api/v1/appointments/by-external-id/bk-7", json=body,
                            headers={**tenant.headers, "If-None-Match": "*"})
    assert resp.status == 412
    resp = await client.put("/api/v1/appointments/by-external-id/bk-7",
                            json={**body, "external_id": "other"}, headers=tenant.headers)
    assert resp.status == 422
    assert count_rows(db, "appointments") == 1


async def test_list_filters(client: Any, tenant: Tenant, staff_id: int) -> None:
    resp = await client.post("/api/v1/staff", json={"email": "ben@example.com", "name": "Ben"},
                             headers=tenant.headers)
    ben = (await resp.json())["id"]
    resp = await client.post("/api/v1/groups", json={"slug": "g", "name": "G", }, headers=tenant.headers)
    group = (await resp.json())["id"]
    await client.put(f"/api/v1/groups/{group}/members/{ben}", headers=tenant.headers)
    _, a1 = await create(client, tenant, staff_id=staff_id, **SLOT)
    _, a2 = await create(client, tenant, staff_id=ben, start="2026-05-05T09:00:00+02:00",
                         end="2026-05-05T10:00:00+02:00")
    _, a3 = await create(client, tenant, staff_id=ben, all_day=True, start="2026-05-10",
                         end="2026-05-11")

    async def ids(query: str) -> list[int]:
        resp = await client.get(f"/api/v1/appointments?{query}", headers=tenant.headers)
        assert resp.status == 200, await resp.text()
        return [a["id"] for a in (await resp.json())["items"]]

    assert await ids(f"staff_id={staff_id}") == [a1["id"]]
    assert await ids(f"group_id={group}") == [a2["id"], a3["id"]]
    assert await ids("start=2026-05-05T00:00:00%2B02:00&end=2026-05-06T00:00:00%2B02:00") == [a2["id"]]
    assert await ids("start=2026-05-10T12:00:00Z&end=2026-05-10T13:00:00Z") == [a3["id"]]
    assert await ids("updated_since=2000-01-01T00:00:00Z&limit=2") == [a1["id"], a2["id"]]
    assert await ids(f"after={a2['id']}") == [a3["id"]]
    for bad, field in [("limit=-1", "limit"), ("limit=abc", "limit"), ("start=yesterday", "start"),
                       ("start=2026-05-05T00:00:00", "start"), ("status=x", "status"),
                       ("staff=1", "staff"),
                       ("start=2026-05-06T00:00:00Z&end=2026-05-05T00:00:00Z", "end")]:
        resp = await client.get(f"/api/v1/appointments?{bad}", headers=tenant.headers)
        assert resp.status == 422, bad
        assert (await resp.json())["field"] == field


async def test_change_log_records_every_mutation_in_the_same_transaction(
        client: Any, tenant: Tenant, staff_id: int, db: Any) -> None:
    _, appt = await create(client, tenant, staff_id=staff_id, **SLOT)
    await client.patch(f"/api/v1/appointments/{appt['id']}",
                       json={"start": "2026-05-04T10:00:00+02:00", "end": "2026-05-04T10:45:00+02:00"},
                       headers={**tenant.headers, "X-Calbridge-Actor": "booking-bot"})
    await client.post(f"/api/v1/appointments/{appt['id']}/cancel", headers=tenant.headers)
    from sqlalchemy import select

    from bridge.db.models import ChangeEntry
    with db.sync_session() as s:
        entries = s.execute(select(ChangeEntry).where(ChangeEntry.entity == "appointment")
                            .order_by(ChangeEntry.seq)).scalars().all()
        assert [e.type for e in entries] == [
            "appointment.created", "appointment.rescheduled", "appointment.cancelled"]
        moved = entries[1]
        assert moved.source == "api" and moved.actor == "booking-bot"
        assert moved.data["before"]["start"] == "2026-05-04T09:00:00+02:00"
        assert moved.data["after"]["start"] == "2026-05-04T10:00:00+02:00"
        seqs = [e.seq for e in entries]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3


async def test_every_read_has_an_etag_and_revalidates(client: Any, tenant: Tenant,
                                                      staff_id: int) -> None:
    _, appt = await create(client, tenant, staff_id=staff_id, **SLOT)
    for path in (f"/api/v1/appointments/{appt['id']}", "/api/v1/appointments", "/api/v1/staff",
                 f"/api/v1/staff/{staff_id}", "/api/v1/groups"):
        resp = await client.get(path, headers=tenant.headers)
        etag = resp.headers["ETag"]
        assert etag.startswith('"')
        resp = await client.get(path, headers={**tenant.headers, "If-None-Match": etag})
        assert resp.status == 304, path
        assert await resp.read() == b""
    resp = await client.get("/api/v1/appointments", headers=tenant.headers)
    listed = resp.headers["ETag"]
    await client.patch(f"/api/v1/appointments/{appt['id']}", json={"notes": "n"}, headers=tenant.headers)
    resp = await client.get("/api/v1/appointments", headers={**tenant.headers, "If-None-Match": listed})
    assert resp.status == 200
