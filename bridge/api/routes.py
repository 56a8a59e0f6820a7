"""Booking API routes: groups, staff, memberships, appointments.

Handlers only translate HTTP to units of work in `bridge.db.repo` and back;
every rule lives there or in `bridge.domain`. All routes are scoped to the
company of the API key (`bridge.api.auth`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.api.auth import company_id
from bridge.api.http import (
    if_match,
    json_body,
    json_response,
    match_id,
    only_params,
    query_datetime,
    query_int,
    query_optional_int,
    version_match,
)
from bridge.db import repo
from bridge.db.models import Group, Staff
from bridge.domain.appointments import STATUSES, snapshot
from bridge.errors import Invalid, NotFound, PreconditionFailed
from bridge.keys import DB

routes = web.RouteTableDef()
API_ACTOR = repo.Actor("api", "api-key")


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None else None


def group_json(g: Group) -> dict[str, Any]:
    return {"id": g.id, "slug": g.slug, "name": g.name, "member_ids": [m.id for m in g.members],
            "version": g.version, "created_at": _iso(g.created_at), "updated_at": _iso(g.updated_at)}


def staff_json(s: Staff) -> dict[str, Any]:
    return {"id": s.id, "email": s.email, "name": s.name, "timezone": s.timezone,
            "active": s.active, "group_ids": [g.id for g in s.groups], "version": s.version,
            "created_at": _iso(s.created_at), "updated_at": _iso(s.updated_at)}


def _actor(request: web.Request) -> repo.Actor:
    label = request.headers.get("X-Calbridge-Actor", "")[:200]
    return repo.Actor("api", label or "api-key")


# --- groups -------------------------------------------------------------------

@routes.get("/api/v1/groups", name="groups")
async def list_groups(request: web.Request) -> web.Response:
    only_params(request, set())
    cid = company_id(request)
    items = await request.app[DB].read(
        lambda s: [group_json(g) for g in repo.list_groups(s, cid)])
    return json_response({"items": items})


@routes.post("/api/v1/groups")
async def create_group(request: web.Request) -> web.Response:
    body = await json_body(request)
    cid = company_id(request)
    data = await request.app[DB].write(
        lambda s: group_json(repo.create_group(s, cid, body, _actor(request))))
    return json_response(data, status=201, etag=f"v{data['version']}",
                         headers={"Location": f"/api/v1/groups/{data['id']}"})


@routes.get("/api/v1/groups/{group_id}", name="group")
async def read_group(request: web.Request) -> web.Response:
    cid, gid = company_id(request), match_id(request, "group_id")
    data = await request.app[DB].read(lambda s: group_json(repo.get_group(s, cid, gid)))
    return json_response(data, etag=f"v{data['version']}")


@routes.patch("/api/v1/groups/{group_id}")
async def update_group(request: web.Request) -> web.Response:
    cid, gid = company_id(request), match_id(request, "group_id")
    body = await json_body(request)
    version = version_match(request)
    data = await request.app[DB].write(lambda s: group_json(
        repo.update_group(s, cid, gid, body, _actor(request), if_match=version)))
    return json_response(data, etag=f"v{data['version']}")


@routes.delete("/api/v1/groups/{group_id}")
async def delete_group(request: web.Request) -> web.Response:
    cid, gid = company_id(request), match_id(request, "group_id")
    version = version_match(request)
    await request.app[DB].write(repo.delete_group, cid, gid, _actor(request), version)
    return web.Response(status=204)


@routes.get("/api/v1/groups/{group_id}/members")
async def list_members(request: web.Request) -> web.Response:
    cid, gid = company_id(request), match_id(request, "group_id")
    items = await request.app[DB].read(
        lambda s: [staff_json(m) for m in repo.get_group(s, cid, gid).members])
    return json_response({"items": items})


@routes.put("/api/v1/groups/{group_id}/members/{staff_id}")
async def add_member(request: web.Request) -> web.Response:
    cid = company_id(request)
    gid, sid = match_id(request, "group_id"), match_id(request, "staff_id")
    added = await request.app[DB].write(repo.add_member, cid, gid, sid, _actor(request))
    return web.Response(status=201 if added else 204)


@routes.delete("/api/v1/groups/{group_id}/members/{staff_id}")
async def remove_member(request: web.Request) -> web.Response:
    cid = company_id(request)
    gid, sid = match_id(request, "group_id"), match_id(request, "staff_id")
    await request.app[DB].write(repo.remove_member, cid, gid, sid, _actor(request))
    return web.Response(status=204)


# --- staff --------------------------------------------------------------------

@routes.get("/api/v1/staff", name="staff_list")
async def list_staff(request: web.Request) -> web.Response:
    only_params(request, {"group_id", "active"})
    cid = company_id(request)
    gid = query_optional_int(request, "group_id")
    active_raw = request.query.get("active")
    if active_raw not in (None, "true", "false"):
        raise Invalid("active must be true or false", field="active")
    active = None if active_raw is None else active_raw == "true"
    items = await request.app[DB].read(lambda s: [
        staff_json(m) for m in repo.list_staff(s, cid, group_id=gid, active=active)])
    return json_response({"items": items})


@routes.post("/api/v1/staff")
async def create_staff(request: web.Request) -> web.Response:
    body = await json_body(request)
    cid = company_id(request)
    data = await request.app[DB].write(
        lambda s: staff_json(repo.create_staff(s, cid, body, _actor(request))))
    return json_response(data, status=201, etag=f"v{data['version']}",
                         headers={"Location": f"/api/v1/staff/{data['id']}"})


@routes.get("/api/v1/staff/{staff_id}", name="staff")
async def read_staff(request: web.Request) -> web.Response:
    cid, sid = company_id(request), match_id(request, "staff_id")
    data = await request.app[DB].read(lambda s: staff_json(repo.get_staff(s, cid, sid)))
    return json_response(data, etag=f"v{data['version']}")


@routes.patch("/api/v1/staff/{staff_id}")
async def update_staff(request: web.Request) -> web.Response:
    cid, sid = company_id(request), match_id(request, "staff_id")
    body = await json_body(request)
    version = version_match(request)
    data = await request.app[DB].write(lambda s: staff_json(
        repo.update_staff(s, cid, sid, body, _actor(request), if_match=version)))
    return json_response(data, etag=f"v{data['version']}")


@routes.delete("/api/v1/staff/{staff_id}")
async def delete_staff(request: web.Request) -> web.Response:
    cid, sid = company_id(request), match_id(request, "staff_id")
    version = version_match(request)
    await request.app[DB].write(repo.delete_staff, cid, sid, _actor(request), version)
    return web.Response(status=204)


# --- appointments -------------------------------------------------------------

APPOINTMENT_PARAMS = {"staff_id", "group_id", "start", "end", "status", "updated_since",
                      "limit", "after"}


@routes.get("/api/v1/appointments", name="appointments")
async def list_appointments(request: web.Request) -> web.Response:
    only_params(request, APPOINTMENT_PARAMS)
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
    f = repo.AppointmentFilter(
        staff_id=query_optional_int(request, "staff_id"),
        group_id=query_optional_int(request, "group_id"),
        start=query_datetime(request, "start"),
        end=query_datetime(request, "end"),
        status=status,
        updated_since=query_datetime(request, "updated_since"),
        after_id=query_int(request, "after", 0, high=2**62),
        limit=query_int(request, "limit", 100, low=1, high=1000),
    )
    if f.start and f.end and f.end <= f.start:
        raise Invalid("end must be after start", field="end")
    cid = company_id(request)
    items = await request.app[DB].read(
        lambda s: [snapshot(a) for a in repo.list_appointments(s, cid, f)])
    next_after = items[-1]["id"] if len(items) == f.limit else None
    return json_response({"items": items, "next_after": next_after})


@routes.post("/api/v1/appointments")
async def create_appointment(request: web.Request) -> web.Response:
    body = await json_body(request)
    cid = company_id(request)
    data = await request.app[DB].write(
        lambda s: snapshot(repo.create_appointment(s, cid, body, _actor(request))))
    return json_response(data, status=201, etag=data["etag"],
                         headers={"Location": f"/api/v1/appointments/{data['id']}"})


@routes.get("/api/v1/appointments/{appointment_id:\\d+}", name="appointment")
async def read_appointment(request: web.Request) -> web.Response:
    cid, aid = company_id(request), match_id(request, "appointment_id")
    data = await request.app[DB].read(lambda s: snapshot(repo.get_appointment(s, cid, aid)))
    return json_response(data, etag=data["etag"])


@routes.patch("/api/v1/appointments/{appointment_id:\\d+}")
async def update_appointment(request: web.Request) -> web.Response:
    cid, aid = company_id(request), match_id(request, "appointment_id")
    body = await json_body(request)
    tag = if_match(request)
    data = await request.app[DB].write(lambda s: snapshot(
        repo.update_appointment(s, cid, aid, body, _actor(request), if_match=tag)[0]))
    return json_response(data, etag=data["etag"])


@routes.post("/api/v1/appointments/{appointment_id:\\d+}/cancel")
async def cancel_appointment(request: web.Request) -> web.Response:
    cid, aid = company_id(request), match_id(request, "appointment_id")
    tag = if_match(request)
    data = await request.app[DB].write(lambda s: snapshot(
        repo.cancel_appointment(s, cid, aid, _actor(request), if_match=tag)))
    return json_response(data, etag=data["etag"])


def _external_id(request: web.Request) -> str:
    ext = request.match_info["external_id"]
    if not ext or len(ext) > 200:
        raise Invalid("external_id must be 1-200 characters", field="external_id")
    return ext


@routes.get("/api/v1/appointments/by-external-id/{external_id}", name="appointment_by_external")
async def read_by_external_id(request: web.Request) -> web.Response:
    cid, ext = company_id(request), _external_id(request)

    def fn(s: Any) -> dict[str, Any]:
        appt = repo.get_appointment_by_external_id(s, cid, ext)
        if appt is None:
            raise NotFound(f"no appointment with external_id {ext!r}", field="external_id")
        return snapshot(appt)

    data = await request.app[DB].read(fn)
    return json_response(data, etag=data["etag"])


@routes.put("/api/v1/appointments/by-external-id/{external_id}")
async def upsert_by_external_id(request: web.Request) -> web.Response:
    cid, ext = company_id(request), _external_id(request)
    body = await json_body(request)
    tag = if_match(request)
    inm = request.headers.get("If-None-Match")
    if inm is not None and inm.strip() != "*":
        raise PreconditionFailed("only If-None-Match: * is supported here")

    def fn(s: Any) -> tuple[dict[str, Any], bool]:
        appt, created, _changed = repo.upsert_appointment(
            s, cid, ext, body, _actor(request), if_match=tag, if_none_match=inm is not None)
        return snapshot(appt), created

    data, created = await request.app[DB].write(fn)
    return json_response(data, status=201 if created else 200, etag=data["etag"],
                         headers={"Location": f"/api/v1/appointments/{data['id']}"})
