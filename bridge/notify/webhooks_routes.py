"""Webhook endpoints in the booking API (/api/v1/webhooks…).

Handlers translate HTTP to the units of work in `webhooks_service` and
back; nothing is sent from a request (the worker does that), so an API call
never waits on a receiver.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from bridge.api.auth import company_id
from bridge.api.http import (
    json_body,
    json_response,
    match_id,
    only_params,
    query_int,
    version_match,
)
from bridge.api.openapi import IF_MATCH, _id, _json, _list_of, _problem, _q, add_paths, op, ref
from bridge.db import repo
from bridge.errors import Invalid
from bridge.keys import DB, SECRET, SETTINGS
from bridge.notify import webhooks_service as svc
from bridge.notify.webhooks import parse_networks

routes = web.RouteTableDef()
STATUSES = ("pending", "succeeded")


def _actor(request: web.Request) -> repo.Actor:
    return repo.Actor("api", request.headers.get("X-Calbridge-Actor", "")[:200] or "api-key")


def _allow(request: web.Request) -> Any:
    return parse_networks(request.app[SETTINGS].webhooks.allow_networks)


def _with_secret(request: web.Request, ep: Any) -> dict[str, Any]:
    return {**svc.endpoint_json(ep), "secret": svc.endpoint_secret(request.app[SECRET], ep)}


@routes.get("/api/v1/webhooks", name="webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    only_params(request, set())
    cid = company_id(request)
    items = await request.app[DB].read(
        lambda s: [svc.endpoint_json(e) for e in svc.list_endpoints(s, cid)])
    return json_response({"items": items})


@routes.post("/api/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    body = await json_body(request)
    cid, allow, actor = company_id(request), _allow(request), _actor(request)
    data = await request.app[DB].write(
        lambda s: _with_secret(request, svc.create_endpoint(s, cid, body, actor, allow)))
    return json_response(data, status=201, etag=f"v{data['version']}",
                         headers={"Location": f"/api/v1/webhooks/{data['id']}"})


@routes.get("/api/v1/webhooks/{webhook_id}", name="webhook")
async def read_webhook(request: web.Request) -> web.Response:
    cid, wid = company_id(request), match_id(request, "webhook_id")

    def fn(s: Session) -> dict[str, Any]:
        ep = svc.get_endpoint(s, cid, wid)
        return {**svc.endpoint_json(ep), "pending_deliveries": svc.pending_count(s, ep.id)}

    data = await request.app[DB].read(fn)
    return json_response(data, etag=f"v{data['version']}")


@routes.patch("/api/v1/webhooks/{webhook_id}")
async def update_webhook(request: web.Request) -> web.Response:
    cid, wid = company_id(request), match_id(request, "webhook_id")
    body = await json_body(request)
    version, allow, actor = version_match(request), _allow(request), _actor(request)
    data = await request.app[DB].write(lambda s: svc.endpoint_json(
        svc.update_endpoint(s, cid, wid, body, actor, allow, if_match=version)))
    return json_response(data, etag=f"v{data['version']}")


@routes.delete("/api/v1/webhooks/{webhook_id}")
async def delete_webhook(request: web.Request) -> web.Response:
    cid, wid = company_id(request), match_id(request, "webhook_id")
    await request.app[DB].write(svc.delete_endpoint, cid, wid, _actor(request),
                                version_match(request))
    return web.Response(status=204)


@routes.get("/api/v1/webhooks/{webhook_id}/secret")
async def read_secret(request: web.Request) -> web.Response:
    cid, wid = company_id(request), match_id(request, "webhook_id")
    secret = await request.app[DB].read(
        lambda s: svc.endpoint_secret(request.app[SECRET], svc.get_endpoint(s, cid, wid)))
    return json_response({"secret": secret}, headers={"Cache-Control": "no-store"})


@routes.post("/api/v1/webhooks/{webhook_id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    cid, wid = company_id(request), match_id(request, "webhook_id")
    grace = request.app[SETTINGS].webhooks.secret_grace_seconds
    data = await request.app[DB].write(lambda s: _with_secret(
        request, svc.rotate_secret(s, cid, wid, _actor(request), grace)))
    return json_response(data, etag=f"v{data['version']}", headers={"Cache-Control": "no-store"})


@routes.post("/api/v1/webhooks/{webhook_id}/test")
async def send_test(request: web.Request) -> web.Response:
    cid, wid = company_id(request), match_id(request, "webhook_id")
    data = await request.app[DB].write(
        lambda s: svc.delivery_json(svc.queue_test(s, cid, wid)))
    return json_response(data, status=202)


@routes.post("/api/v1/webhooks/{webhook_id}/replay")
async def replay(request: web.Request) -> web.Response:
    cid, wid = company_id(request), match_id(request, "webhook_id")
    body = await json_body(request)
    unknown = sorted(set(body) - {"from_seq", "to_seq"})
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0])
    queued = await request.app[DB].write(svc.replay, cid, wid, body.get("from_seq"),
                                         body.get("to_seq"), request.app[SECRET])
    return json_response({"queued": queued}, status=202)


@routes.get("/api/v1/webhooks/{webhook_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    only_params(request, {"status", "after", "limit"})
    cid, wid = company_id(request), match_id(request, "webhook_id")
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
    after = query_int(request, "after", 0, high=2**62)
    limit = query_int(request, "limit", 100, low=1, high=1000)
    items = await request.app[DB].read(lambda s: [svc.delivery_json(d) for d in svc.list_deliveries(
        s, cid, wid, status=status, after_id=after, limit=limit)])
    next_after = items[-1]["id"] if len(items) == limit else None
    return json_response({"items": items, "next_after": next_after})


@routes.get("/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}")
async def read_delivery(request: web.Request) -> web.Response:
    cid, wid = company_id(request), match_id(request, "webhook_id")
    did = match_id(request, "delivery_id")

    def fn(s: Session) -> dict[str, Any]:
        d, attempts = svc.get_delivery(s, cid, wid, did)
        return {**svc.delivery_json(d), "attempt_log": [svc.attempt_json(a) for a in attempts]}

    return json_response(await request.app[DB].read(fn))


_WID = _id("webhook_id")
add_paths({
    "/api/v1/webhooks": {
        "get": op("List webhook endpoints", {"200": _json(_list_of("WebhookEndpoint"))},
                  tag="webhooks"),
        "post": op("Add a webhook endpoint (the answer holds its signing secret)",
                   {"201": _json(ref("WebhookEndpoint"), "Created"),
                    "409": _problem("The company has the most endpoints allowed")},
                   body="WebhookInput",
                   tag="webhooks"),
    },
    "/api/v1/webhooks/{webhook_id}": {
        "get": op("Read a webhook endpoint", {"200": _json(ref("WebhookEndpoint"))},
                  params=[_WID], tag="webhooks"),
        "patch": op("Change URL, event types, description; enable or disable",
                    {"200": _json(ref("WebhookEndpoint")), "412": _problem("Stale If-Match")},
                    params=[_WID, IF_MATCH], body="WebhookInput", tag="webhooks"),
        "delete": op("Delete a webhook endpoint and its delivery log",
                     {"204": {"description": "Deleted"}, "412": _problem("Stale If-Match")},
                     params=[_WID, IF_MATCH], tag="webhooks"),
    },
    "/api/v1/webhooks/{webhook_id}/secret": {
        "get": op("The endpoint's signing secret (whsec_…)", {"200": _json({"type": "object"})},
                  params=[_WID], tag="webhooks"),
    },
    "/api/v1/webhooks/{webhook_id}/rotate-secret": {
        "post": op("New signing secret; the old one also signs during the grace period",
                   {"200": _json(ref("WebhookEndpoint"))}, params=[_WID], tag="webhooks"),
    },
    "/api/v1/webhooks/{webhook_id}/test": {
        "post": op("Queue a webhook.test message", {"202": _json(ref("WebhookDelivery")),
                                                    "409": _problem("Endpoint disabled")},
                   params=[_WID], tag="webhooks"),
    },
    "/api/v1/webhooks/{webhook_id}/replay": {
        "post": op("Queue again the events with from_seq <= seq <= to_seq",
                   {"202": _json({"type": "object",
                                  "properties": {"queued": {"type": "integer"}}})},
                   params=[_WID], body="WebhookReplay", tag="webhooks"),
    },
    "/api/v1/webhooks/{webhook_id}/deliveries": {
        "get": op("The delivery log, oldest first", {"200": _json(_list_of("WebhookDelivery"))},
                  params=[_WID, _q("status", {"enum": list(STATUSES)}),
                          _q("after", {"type": "integer"}, "next_after of the previous page"),
                          _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
                  tag="webhooks"),
    },
    "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}": {
        "get": op("One delivery with each attempt", {"200": _json(ref("WebhookDelivery"))},
                  params=[_WID, _id("delivery_id")], tag="webhooks"),
    },
}, {
    "WebhookEndpoint": {
        "type": "object",
        "required": ["id", "url", "event_types", "enabled", "version"],
        "properties": {
            "id": {"type": "integer"},
            "url": {"type": "string", "format": "uri"},
            "description": {"type": "string"},
            "event_types": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"},
            "disabled_reason": {"type": ["string", "null"]},
            "disabled_at": {"type": ["string", "null"], "format": "date-time"},
            "failing_since": {"type": ["string", "null"], "format": "date-time"},
            "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
            "pending_deliveries": {"type": "integer"},
            "secret": {"type": "string", "description": "only when created or rotated"},
            "version": {"type": "integer"},
        },
    },
    "WebhookInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": 2000},
            "event_types": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                            "description": "exact types, entity.* or *"},
            "description": {"type": "string", "maxLength": 200},
            "enabled": {"type": "boolean"},
        },
    },
    "WebhookReplay": {
        "type": "object",
        "additionalProperties": False,
        "required": ["from_seq", "to_seq"],
        "properties": {"from_seq": {"type": "integer", "minimum": 1},
                       "to_seq": {"type": "integer", "minimum": 1}},
    },
    "WebhookDelivery": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "message_id": {"type": "string"},
            "event_type": {"type": "string"}, "seq": {"type": ["integer", "null"]},
            "kind": {"enum": ["event", "replay", "test"]},
            "status": {"enum": list(STATUSES)}, "attempts": {"type": "integer"},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "attempt_log": {"type": "array", "items": {"type": "object"}},
        },
    },
})
