"""The OpenAPI 3.1 document served at /api/v1/openapi.json.

Route modules describe their own paths with `add_paths(...)` at import time;
`tests/api/test_openapi.py` checks that the document and the router list
the same operations.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "field": {"type": "string", "description": "The offending field or parameter."},
        },
    },
    "Group": {
        "type": "object",
        "required": ["id", "slug", "name", "member_ids", "version"],
        "properties": {
            "id": {"type": "integer"},
            "slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
            "name": {"type": "string", "maxLength": 200},
            "member_ids": {"type": "array", "items": {"type": "integer"}},
            "version": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "GroupInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
        },
    },
    "Staff": {
        "type": "object",
        "required": ["id", "email", "name", "timezone", "active", "group_ids", "version"],
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string", "format": "email"},
            "name": {"type": "string"},
            "timezone": {"type": "string", "description": "IANA time zone name"},
            "active": {"type": "boolean"},
            "group_ids": {"type": "array", "items": {"type": "integer"}},
            "version": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "StaffInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email"},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "timezone": {"type": "string"},
            "active": {"type": "boolean"},
            "group_ids": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "Appointment": {
        "type": "object",
        "required": ["id", "uid", "staff_id", "start", "end", "all_day", "timezone", "status",
                     "sequence", "version", "etag"],
        "properties": {
            "id": {"type": "integer"},
            "uid": {"type": "string", "description": "iCalendar UID, stable for life"},
            "external_id": {"type": ["string", "null"]},
            "staff_id": {"type": "integer"},
            "start": {"type": "string", "description": "date-time with offset, or date if all_day"},
            "end": {"type": "string", "description": "exclusive; date-time, or date if all_day"},
            "all_day": {"type": "boolean"},
            "timezone": {"type": "string"},
            "status": {"enum": ["confirmed", "tentative", "cancelled"]},
            "service_name": {"type": "string"},
            "customer_name": {"type": "string"},
            "customer_email": {"type": "string"},
            "customer_phone": {"type": "string"},
            "location": {"type": "string"},
            "meeting_url": {"type": "string"},
            "notes": {"type": "string"},
            "sequence": {"type": "integer"},
            "version": {"type": "integer"},
            "etag": {"type": "string"},
            "last_changed_by": {
                "type": "object",
                "properties": {"source": {"enum": ["api", "caldav", "admin", "sync"]},
                               "actor": {"type": "string"}},
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "AppointmentInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "external_id": {"type": ["string", "null"], "maxLength": 200},
            "staff_id": {"type": "integer"},
            "start": {"type": "string"},
            "end": {"type": "string"},
            "all_day": {"type": "boolean"},
            "timezone": {"type": "string"},
            "status": {"enum": ["confirmed", "tentative", "cancelled"]},
            "service_name": {"type": "string", "maxLength": 200},
            "customer_name": {"type": "string", "maxLength": 200},
            "customer_email": {"type": "string", "maxLength": 254},
            "customer_phone": {"type": "string", "maxLength": 64},
            "location": {"type": "string", "maxLength": 500},
            "meeting_url": {"type": "string", "maxLength": 1000},
            "notes": {"type": "string", "maxLength": 10000},
        },
    },
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(desc: str) -> dict[str, Any]:
    return {"description": desc,
            "content": {"application/problem+json": {"schema": ref("Problem")}}}


def _json(schema: dict[str, Any], desc: str = "OK") -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": ref(name)}}}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


def _id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _q(name: str, schema: dict[str, Any], desc: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": desc}


IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
            "description": "The ETag of your last read; a stale one gets 412 and changes nothing."}
ERRORS = {
    "401": _problem("Missing or unknown API key"),
    "404": _problem("Not found in your company"),
    "422": _problem("Invalid input; `field` names the offender"),
}


def op(summary: str, responses: dict[str, Any], *, params: list[Any] | None = None,
       body: str | None = None, tag: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"summary": summary, "responses": {**responses, **ERRORS}}
    if params:
        out["parameters"] = params
    if body:
        out["requestBody"] = _body(body)
        out["responses"]["400"] = _problem("Malformed JSON")
        out["responses"]["413"] = _problem("Body too large")
    if tag:
        out["tags"] = [tag]
    return out


PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/groups": {
        "get": op("List groups", {"200": _json(_list_of("Group"))}, tag="groups"),
        "post": op("Create a group", {"201": _json(ref("Group"), "Created"),
                                      "409": _problem("Slug taken")}, body="GroupInput",
                   tag="groups"),
    },
    "/api/v1/groups/{group_id}": {
        "get": op("Read a group", {"200": _json(ref("Group"))}, params=[_id("group_id")],
                  tag="groups"),
        "patch": op("Update a group", {"200": _json(ref("Group")), "409": _problem("Slug taken"),
                                       "412": _problem("Stale If-Match")},
                    params=[_id("group_id"), IF_MATCH], body="GroupInput", tag="groups"),
        "delete": op("Delete a group", {"204": {"description": "Deleted"},
                                        "412": _problem("Stale If-Match")},
                     params=[_id("group_id"), IF_MATCH], tag="groups"),
    },
    "/api/v1/groups/{group_id}/members": {
        "get": op("List a group's members", {"200": _json(_list_of("Staff"))},
                  params=[_id("group_id")], tag="groups"),
    },
    "/api/v1/groups/{group_id}/members/{staff_id}": {
        "put": op("Add a member", {"201": {"description": "Added"},
                                   "204": {"description": "Already a member"}},
                  params=[_id("group_id"), _id("staff_id")], tag="groups"),
        "delete": op("Remove a member", {"204": {"description": "Removed"}},
                     params=[_id("group_id"), _id("staff_id")], tag="groups"),
    },
    "/api/v1/staff": {
        "get": op("List staff", {"200": _json(_list_of("Staff"))},
                  params=[_q("group_id", {"type": "integer"}),
                          _q("active", {"enum": ["true", "false"]})], tag="staff"),
        "post": op("Create a staff member", {"201": _json(ref("Staff"), "Created"),
                                             "409": _problem("Email taken")},
                   body="StaffInput", tag="staff"),
    },
    "/api/v1/staff/{staff_id}": {
        "get": op("Read a staff member", {"200": _json(ref("Staff"))}, params=[_id("staff_id")],
                  tag="staff"),
        "patch": op("Update a staff member", {"200": _json(ref("Staff")),
                                              "409": _problem("Email taken"),
                                              "412": _problem("Stale If-Match")},
                    params=[_id("staff_id"), IF_MATCH], body="StaffInput", tag="staff"),
        "delete": op("Delete a staff member (refused while they have appointments)",
                     {"204": {"description": "Deleted"}, "409": _problem("Has appointments"),
                      "412": _problem("Stale If-Match")},
                     params=[_id("staff_id"), IF_MATCH], tag="staff"),
    },
    "/api/v1/appointments": {
        "get": op("List appointments", {"200": _json({
            "type": "object", "required": ["items", "next_after"],
            "properties": {"items": {"type": "array", "items": ref("Appointment")},
                           "next_after": {"type": ["integer", "null"]}}})},
            params=[_q("staff_id", {"type": "integer"}), _q("group_id", {"type": "integer"}),
                    _q("start", {"type": "string", "format": "date-time"},
                       "only appointments ending after this"),
                    _q("end", {"type": "string", "format": "date-time"},
                       "only appointments starting before this"),
                    _q("status", {"enum": ["confirmed", "tentative", "cancelled"]}),
                    _q("updated_since", {"type": "string", "format": "date-time"}),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _q("after", {"type": "integer", "minimum": 0},
                       "page cursor: next_after of the previous page")],
            tag="appointments"),
        "post": op("Create an appointment", {"201": _json(ref("Appointment"), "Created"),
                                             "409": _problem("external_id taken")},
                   body="AppointmentInput", tag="appointments"),
    },
    "/api/v1/appointments/{appointment_id}": {
        "get": op("Read an appointment", {"200": _json(ref("Appointment"))},
                  params=[_id("appointment_id")], tag="appointments"),
        "patch": op("Update an appointment", {"200": _json(ref("Appointment")),
                                              "409": _problem("external_id taken"),
                                              "412": _problem("Stale If-Match")},
                    params=[_id("appointment_id"), IF_MATCH], body="AppointmentInput",
                    tag="appointments"),
    },
    "/api/v1/appointments/{appointment_id}/cancel": {
        "post": op("Cancel an appointment", {"200": _json(ref("Appointment")),
                                             "412": _problem("Stale If-Match")},
                   params=[_id("appointment_id"), IF_MATCH], tag="appointments"),
    },
    "/api/v1/appointments/by-external-id/{external_id}": {
        "get": op("Read an appointment by the booking system's id",
                  {"200": _json(ref("Appointment"))},
                  params=[{"name": "external_id", "in": "path", "required": True,
                           "schema": {"type": "string"}}], tag="appointments"),
        "put": op("Create or replace an appointment by the booking system's id (idempotent)",
                  {"200": _json(ref("Appointment"), "Replaced or unchanged"),
                   "201": _json(ref("Appointment"), "Created"),
                   "412": _problem("Stale If-Match, or If-None-Match: * and it exists")},
                  params=[{"name": "external_id", "in": "path", "required": True,
                           "schema": {"type": "string"}}, IF_MATCH,
                          {"name": "If-None-Match", "in": "header", "required": False,
                           "schema": {"const": "*"}}],
                  body="AppointmentInput", tag="appointments"),
    },
}


def add_paths(paths: dict[str, dict[str, Any]], schemas: dict[str, Any] | None = None) -> None:
    """Let a feature's route module describe its own operations."""
    for path, ops in paths.items():
        PATHS.setdefault(path, {}).update(ops)
    SCHEMAS.update(schemas or {})


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "calbridge booking API", "version": "1"},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(document())
