"""GET /api/v1/changes: the company's change log after a cursor, oldest first.

`after` is an opaque cursor from a previous answer (omit it to start from
the oldest kept entry); `limit` caps the page (1–1000); `wait` (seconds,
bounded by `[changes] max_wait_seconds`) turns an empty answer into a long
poll that returns as soon as an entry arrives, in this worker or another.
Errors: 400 for a cursor that is not this company's, 410 for one older than
retention, 422 for a bad limit or wait.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.api.auth import company_id
from bridge.api.http import json_response, only_params, query_int
from bridge.api.openapi import _json, _problem, _q, add_paths, op, ref
from bridge.changes import service
from bridge.changes.listen import listener_ctx
from bridge.errors import Invalid
from bridge.keys import CHANGES_STOPPING, DB, SECRET, SETTINGS

routes = web.RouteTableDef()


@routes.get("/api/v1/changes", name="changes")
async def list_changes(request: web.Request) -> web.Response:
    only_params(request, {"after", "limit", "wait"})
    settings = request.app[SETTINGS].changes
    cid, secret, db = company_id(request), request.app[SECRET], request.app[DB]
    raw = request.query.get("after")
    if raw is not None and not raw:
        raise Invalid("after must be a cursor (or left out)", field="after")
    after = service.decode_cursor(secret, cid, raw) if raw is not None else None
    limit = query_int(request, "limit", 100, low=1, high=1000)
    wait = query_int(request, "wait", 0, low=0, high=settings.max_wait_seconds)
    page = await db.read(service.read_changes, cid, after, limit, secret)
    if not page.entries and wait > 0:
        stopping = request.app[CHANGES_STOPPING]

        def give_up() -> bool:  # the client left, or the server is stopping
            transport = request.transport
            return stopping.is_set() or transport is None or transport.is_closing()

        if await service.wait_for_changes(db, cid, page.last_seq, wait, settings.poll_ms / 1000,
                                          give_up=give_up):
            page = await db.read(service.read_changes, cid, page.last_seq, limit, secret)
    return json_response({
        "items": page.entries,
        "next_cursor": service.encode_cursor(secret, cid, page.last_seq),
        "has_more": page.last_seq < page.head,
    }, headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    """Routes, the PostgreSQL listener, and ending long polls at shutdown."""
    app[CHANGES_STOPPING] = asyncio.Event()

    async def stopping(app: web.Application) -> None:
        app[CHANGES_STOPPING].set()
        service.SIGNAL.notify()

    app.router.add_routes(routes)
    app.cleanup_ctx.append(listener_ctx)
    app.on_shutdown.append(stopping)


@routes.get("/api/v1/changes/event-types", name="change_event_types")
async def event_types(request: web.Request) -> web.Response:
    only_params(request, set())
    return json_response({"items": [{"type": t, "description": d}
                                    for t, d in service.EVENT_TYPES.items()]})


add_paths({
    "/api/v1/changes": {
        "get": op(
            "Read the change log after a cursor, oldest first (long poll with wait)",
            {"200": _json(ref("ChangePage")),
             "400": _problem("after is not a cursor of your company"),
             "410": _problem("Entries after this cursor were purged: resynchronise")},
            params=[_q("after", {"type": "string"}, "next_cursor of a previous answer"),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _q("wait", {"type": "integer", "minimum": 0},
                       "seconds to wait for an entry when there is none")],
            tag="changes"),
    },
    "/api/v1/changes/event-types": {
        "get": op("The event types of the change log and webhooks",
                  {"200": _json({"type": "object"})}, tag="changes"),
    },
}, {
    "Change": {
        "type": "object",
        "required": ["cursor", "seq", "type", "entity", "entity_id", "source", "occurred_at",
                     "data"],
        "properties": {
            "cursor": {"type": "string"},
            "seq": {"type": "integer", "description": "per company, gap-free, increasing"},
            "type": {"type": "string", "examples": ["appointment.rescheduled"]},
            "entity": {"type": "string"},
            "entity_id": {"type": "integer"},
            "staff_id": {"type": ["integer", "null"]},
            "source": {"enum": ["api", "caldav", "admin", "sync"]},
            "actor": {"type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "data": {"type": "object", "description": "before/after values; see event-types"},
        },
    },
    "ChangePage": {
        "type": "object",
        "required": ["items", "next_cursor", "has_more"],
        "properties": {
            "items": {"type": "array", "items": ref("Change")},
            "next_cursor": {"type": "string"},
            "has_more": {"type": "boolean"},
        },
    },
})
