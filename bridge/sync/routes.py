"""Calendar-link API: a staff member's external calendars, CalDAV discovery,
and the company's policy when one fails. HTTP in and out only; the rules
are in `bridge.sync.service`, the network in `bridge.sync.sources`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bridge.api.auth import company_id
from bridge.api.http import json_body, json_response, match_id, only_params, version_match
from bridge.api.openapi import IF_MATCH, _id, _json, _list_of, _problem, add_paths, op, ref
from bridge.db import repo
from bridge.db.models import utcnow
from bridge.errors import Invalid, Unauthorized
from bridge.keys import DB, SETTINGS
from bridge.sync import service, sources

routes = web.RouteTableDef()
BASE = "/api/v1/staff/{staff_id:\\d+}/calendar-links"


def _actor(request: web.Request) -> repo.Actor:
    return repo.Actor("api", request.headers.get("X-Calbridge-Actor", "")[:200] or "api-key")


def _ids(request: web.Request) -> tuple[int, int]:
    return company_id(request), match_id(request, "staff_id")


@routes.get(BASE)
async def list_links(request: web.Request) -> web.Response:
    only_params(request, set())
    cid, sid = _ids(request)
    items = await request.app[DB].read(
        lambda s: [service.link_json(x) for x in service.list_links(s, cid, sid)])
    return json_response({"items": items})


@routes.post(BASE)
async def create_link(request: web.Request) -> web.Response:
    cid, sid = _ids(request)
    body = await json_body(request)
    settings = request.app[SETTINGS]
    data = await request.app[DB].write(lambda s: service.link_json(
        service.create_link(s, settings, cid, sid, body, _actor(request))))
    return json_response(data, status=201, etag=f"v{data['version']}",
                         headers={"Location": f"/api/v1/staff/{sid}/calendar-links/{data['id']}"})


@routes.get(BASE + "/{link_id:\\d+}")
async def read_link(request: web.Request) -> web.Response:
    (cid, sid), lid = _ids(request), match_id(request, "link_id")
    data = await request.app[DB].read(
        lambda s: service.link_json(service.get_link(s, cid, sid, lid)))
    return json_response(data, etag=f"v{data['version']}")


@routes.patch(BASE + "/{link_id:\\d+}")
async def update_link(request: web.Request) -> web.Response:
    (cid, sid), lid = _ids(request), match_id(request, "link_id")
    body = await json_body(request)
    version = version_match(request)
    settings = request.app[SETTINGS]
    data = await request.app[DB].write(lambda s: service.link_json(service.update_link(
        s, settings, cid, sid, lid, body, _actor(request), if_match=version)))
    return json_response(data, etag=f"v{data['version']}")


@routes.delete(BASE + "/{link_id:\\d+}")
async def delete_link(request: web.Request) -> web.Response:
    (cid, sid), lid = _ids(request), match_id(request, "link_id")
    version = version_match(request)
    await request.app[DB].write(service.delete_link, cid, sid, lid, _actor(request), version)
    return web.Response(status=204)


@routes.post(BASE + "/{link_id:\\d+}/refresh")
async def refresh_link(request: web.Request) -> web.Response:
    """Ask for a read as soon as the poller next ticks."""
    (cid, sid), lid = _ids(request), match_id(request, "link_id")

    def fn(s: Any) -> dict[str, Any]:
        link = service.get_link(s, cid, sid, lid)
        link.next_poll_at = utcnow()
        link.push_error = ""
        return service.link_json(link)

    data = await request.app[DB].write(fn)
    return json_response(data, status=202)


@routes.post(BASE + "/discover")
async def discover(request: web.Request) -> web.Response:
    """List the calendars of a CalDAV account (nothing is stored)."""
    cid, sid = _ids(request)
    body = await json_body(request)
    unknown = sorted(set(body) - {"server_url", "username", "password"})
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0])
    await request.app[DB].read(repo.get_staff, cid, sid)
    server = sources.normalise_url(body.get("server_url"), "server_url")
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not username:
        raise Invalid("username is required", field="username")
    if not isinstance(password, str) or not password:
        raise Invalid("password is required", field="password")
    cfg = request.app[SETTINGS].sync
    try:
        await sources.check_address(server, cfg.allow_private_addresses)
        calendars = await asyncio.to_thread(sources.discover, server, username, password,
                                            cfg.timeout_seconds)
    except sources.SourceError as exc:
        if exc.kind == "auth":
            raise Unauthorized(exc.message, field="password") from None
        raise Invalid(exc.message, field="server_url") from None
    return json_response({"items": calendars})


@routes.get("/api/v1/calendar-policy")
async def read_policy(request: web.Request) -> web.Response:
    cid = company_id(request)
    return json_response(await request.app[DB].read(service.get_policy, cid))


@routes.patch("/api/v1/calendar-policy")
async def update_policy(request: web.Request) -> web.Response:
    cid = company_id(request)
    body = await json_body(request)
    return json_response(await request.app[DB].write(
        service.set_policy, request.app[SETTINGS], cid, body, _actor(request)))


SCHEMAS = {
    "CalendarLink": {
        "type": "object",
        "required": ["id", "staff_id", "kind", "health", "check_conflicts", "add_appointments",
                     "version"],
        "properties": {
            "id": {"type": "integer"}, "staff_id": {"type": "integer"},
            "kind": {"enum": ["ics", "caldav"]}, "label": {"type": "string"},
            "url": {"type": "string", "description": "the address without its secret parts"},
            "server_url": {"type": ["string", "null"]},
            "username": {"type": ["string", "null"]},
            "calendar_url": {"type": ["string", "null"]},
            "check_conflicts": {"type": "boolean"}, "add_appointments": {"type": "boolean"},
            "enabled": {"type": "boolean"}, "interval_seconds": {"type": "integer"},
            "health": {"enum": list(service.HEALTH)},
            "consecutive_failures": {"type": "integer"},
            "last_error": {"type": ["string", "null"]},
            "last_error_at": {"type": ["string", "null"], "format": "date-time"},
            "last_success_at": {"type": ["string", "null"], "format": "date-time"},
            "last_polled_at": {"type": ["string", "null"], "format": "date-time"},
            "next_poll_at": {"type": ["string", "null"], "format": "date-time"},
            "busy_intervals": {"type": "integer"},
            "push_error": {"type": ["string", "null"]},
            "version": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "CalendarLinkInput": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "kind": {"enum": ["ics", "caldav"], "description": "create only"},
            "label": {"type": "string", "maxLength": 200},
            "url": {"type": "string", "description": "ICS: https:// or webcal:// address"},
            "server_url": {"type": "string", "description": "CalDAV: the account's server"},
            "username": {"type": "string"},
            "password": {"type": "string", "writeOnly": True,
                         "description": "CalDAV app-specific password; stored encrypted, "
                                        "never returned"},
            "calendar_url": {"type": "string", "description": "CalDAV: one from discover"},
            "check_conflicts": {"type": "boolean"}, "add_appointments": {"type": "boolean"},
            "enabled": {"type": "boolean"},
            "interval_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
        },
    },
    "CalDAVAccount": {
        "type": "object", "additionalProperties": False,
        "required": ["server_url", "username", "password"],
        "properties": {"server_url": {"type": "string"}, "username": {"type": "string"},
                       "password": {"type": "string", "writeOnly": True}},
    },
    "CalendarPolicy": {
        "type": "object",
        "properties": {
            "on_calendar_failure": {"enum": ["keep_booking", "stop_booking"]},
            "slack_webhook": {"type": ["string", "null"],
                              "description": "the company's Slack webhook, host only"},
            "email_admins": {"type": "boolean"}},
    },
    "CalendarPolicyInput": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "on_calendar_failure": {"enum": ["keep_booking", "stop_booking"]},
            "slack_webhook_url": {"type": ["string", "null"], "writeOnly": True,
                                  "description": "Slack incoming-webhook URL for calendar "
                                                 "alerts (stored encrypted); null: none"},
            "email_admins": {"type": "boolean",
                             "description": "copy alert emails to the company admins"}},
    },
}
_LINK = [_id("staff_id"), _id("link_id")]
add_paths({
    "/api/v1/staff/{staff_id}/calendar-links": {
        "get": op("List a staff member's calendar links",
                  {"200": _json(_list_of("CalendarLink"))}, params=[_id("staff_id")],
                  tag="calendar-links"),
        "post": op("Link an external calendar (ICS URL or CalDAV account)",
                   {"201": _json(ref("CalendarLink"), "Created")}, params=[_id("staff_id")],
                   body="CalendarLinkInput", tag="calendar-links"),
    },
    "/api/v1/staff/{staff_id}/calendar-links/{link_id}": {
        "get": op("Read a calendar link and its health", {"200": _json(ref("CalendarLink"))},
                  params=_LINK, tag="calendar-links"),
        "patch": op("Change a calendar link (new password, flags, interval)",
                    {"200": _json(ref("CalendarLink")), "412": _problem("Stale If-Match")},
                    params=[*_LINK, IF_MATCH], body="CalendarLinkInput", tag="calendar-links"),
        "delete": op("Unlink a calendar (its busy time goes with it)",
                     {"204": {"description": "Deleted"}, "412": _problem("Stale If-Match")},
                     params=[*_LINK, IF_MATCH], tag="calendar-links"),
    },
    "/api/v1/staff/{staff_id}/calendar-links/{link_id}/refresh": {
        "post": op("Read the calendar at the poller's next tick",
                   {"202": _json(ref("CalendarLink"), "Scheduled")}, params=_LINK,
                   tag="calendar-links"),
    },
    "/api/v1/staff/{staff_id}/calendar-links/discover": {
        "post": op("List the calendars of a CalDAV account",
                   {"200": _json({"type": "object", "properties": {"items": {
                       "type": "array", "items": {"type": "object", "properties": {
                           "url": {"type": "string"}, "name": {"type": "string"}}}}}})},
                   params=[_id("staff_id")], body="CalDAVAccount", tag="calendar-links"),
    },
    "/api/v1/calendar-policy": {
        "get": op("What availability does when a linked calendar fails",
                  {"200": _json(ref("CalendarPolicy"))}, tag="calendar-links"),
        "patch": op("Set keep_booking (default) or stop_booking",
                    {"200": _json(ref("CalendarPolicy"))}, body="CalendarPolicyInput",
                    tag="calendar-links"),
    },
}, SCHEMAS)
