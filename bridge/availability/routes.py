"""GET /api/v1/availability: query parameters in, the service's answer out.

Every parameter is checked (unknown ones too) and a bad one gets a 422
problem naming it; the rules live in `bridge.availability.service`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from bridge.api.auth import company_id
from bridge.api.http import json_response, only_params, query_datetime, query_int
from bridge.api.openapi import _json, _q, add_paths, op
from bridge.availability.service import Query, availability
from bridge.domain.busy import parse_working_hours
from bridge.errors import Invalid
from bridge.keys import DB

routes = web.RouteTableDef()
PARAMS = {"staff", "group", "start", "end", "duration", "granularity", "working_hours", "busy"}


def _staff_ids(raw: str | None) -> tuple[int, ...]:
    if raw is None:
        return ()
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and len(p) <= 18 for p in parts):
        raise Invalid("staff must be a comma-separated list of staff ids", field="staff")
    return tuple(int(p) for p in parts)


def parse_query(request: web.Request) -> Query:
    only_params(request, PARAMS)
    start, end = query_datetime(request, "start"), query_datetime(request, "end")
    if start is None:
        raise Invalid("start is required (ISO 8601 with an offset)", field="start")
    if end is None:
        raise Invalid("end is required (ISO 8601 with an offset)", field="end")
    group = request.query.get("group")
    if group is not None and (not group.isdigit() or len(group) > 18):
        raise Invalid("group must be a group id", field="group")
    hours_raw = request.query.get("working_hours")
    busy = request.query.get("busy", "true")
    if busy not in ("true", "false"):
        raise Invalid("busy must be true or false", field="busy")
    return Query(
        start=start.astimezone(dt.UTC), end=end.astimezone(dt.UTC),
        staff_ids=_staff_ids(request.query.get("staff")),
        group_id=int(group) if group is not None else None,
        duration=dt.timedelta(minutes=query_int(request, "duration", 30, low=1, high=1440)),
        granularity=dt.timedelta(
            minutes=query_int(request, "granularity", 15, low=1, high=1440)),
        working_hours=parse_working_hours(hours_raw) if hours_raw is not None else None,
        include_busy=busy == "true",
    )


@routes.get("/api/v1/availability", name="availability")
async def get_availability(request: web.Request) -> web.Response:
    q = parse_query(request)
    cid = company_id(request)
    data: dict[str, Any] = await request.app[DB].read(availability, cid, q)
    return json_response(data)


_INTERVAL = {"type": "object", "required": ["start", "end"],
             "properties": {"start": {"type": "string", "format": "date-time"},
                            "end": {"type": "string", "format": "date-time"}}}
SCHEMAS = {
    "Availability": {
        "type": "object",
        "required": ["start", "end", "degraded", "staff", "any_of", "all_of", "policy"],
        "properties": {
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"},
            "duration_minutes": {"type": "integer"},
            "granularity_minutes": {"type": "integer"},
            "policy": {"type": "object", "properties": {
                "on_calendar_failure": {"enum": ["keep_booking", "stop_booking"]}}},
            "degraded": {"type": "boolean",
                         "description": "a conflict-checking calendar link of someone asked "
                                        "about cannot be read now"},
            "staff": {"type": "array", "items": {"type": "object", "properties": {
                "staff_id": {"type": "integer"},
                "timezone": {"type": "string"},
                "degraded": {"type": "boolean"},
                "failing_links": {"type": "array", "items": {"type": "object"}},
                "reason": {"type": "string",
                           "description": "why no slots are offered, when none are"},
                "busy": {"type": "array", "items": _INTERVAL,
                         "description": "appointments, blocked time and external busy, merged"},
                "slots": {"type": "array", "items": _INTERVAL},
                "truncated": {"type": "boolean"},
            }}},
            "any_of": {"type": "array", "items": {**_INTERVAL, "properties": {
                **_INTERVAL["properties"],  # type: ignore[dict-item]
                "staff_ids": {"type": "array", "items": {"type": "integer"}}}}},
            "all_of": {"type": "array", "items": _INTERVAL},
        },
    },
}

add_paths({
    "/api/v1/availability": {
        "get": op(
            "Busy time and free slots of staff members, merged from appointments, blocked "
            "time and their external calendars",
            {"200": _json({"$ref": "#/components/schemas/Availability"})},
            params=[
                _q("staff", {"type": "string"}, "comma-separated staff ids"),
                _q("group", {"type": "integer"}, "a group id: its members are added"),
                _q("start", {"type": "string", "format": "date-time"}, "required"),
                _q("end", {"type": "string", "format": "date-time"},
                   "required; at most 62 days after start"),
                _q("duration", {"type": "integer", "minimum": 1, "maximum": 1440},
                   "slot length in minutes (30)"),
                _q("granularity", {"type": "integer", "minimum": 1, "maximum": 1440},
                   "slots start at start + k·granularity minutes (15)"),
                _q("working_hours", {"type": "string"},
                   "in each staff member's zone, e.g. 'mon-fri 09:00-17:00, sat 10:00-13:00'; "
                   "default: the whole window"),
                _q("busy", {"enum": ["true", "false"]}, "include busy intervals (true)"),
            ],
            tag="availability"),
    },
}, SCHEMAS)
