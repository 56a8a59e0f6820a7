"""HTTP for feeds: `GET/HEAD /feeds/{token}.ics` and the `/api/v1/feeds` API.

The feed route answers 200 or 304 (RFC 9110 §13: strong ETag and
Last-Modified, If-None-Match before If-Modified-Since), gzip only when the
request accepts it, 404 with the same body for every unknown, rotated,
revoked or malformed token, 405 for other methods (aiohttp's router), and
never logs the token (the access log redacts `/feeds/…`). The API handlers
only translate HTTP to the units of work in `bridge.feeds.service`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from bridge.api.auth import company_id
from bridge.api.http import json_body, json_response, match_id, only_params
from bridge.api.openapi import _id, _json, _list_of, _problem, _q, add_paths, op, ref
from bridge.db import repo
from bridge.feeds import service
from bridge.feeds.serve import CachedFeed, FeedServer
from bridge.keys import DB, FEEDS, SECRET, SETTINGS

routes = web.RouteTableDef()
MAX_QUERY = 1024
log = logging.getLogger(__name__)
Record = Callable[[web.BaseRequest, str, int, float], None]  # bridge.app.make_recorder


def _not_found() -> web.Response:
    return web.Response(status=404, text="Not found\n", headers={"Cache-Control": "no-store"})


def _accepts_gzip(request: web.BaseRequest) -> bool:
    """Whether Accept-Encoding allows gzip (RFC 9110 §12.5.3; q=0 refuses)."""
    header = request.headers.get("Accept-Encoding")
    if not header or "gzip" not in header.lower():
        return False
    for part in header.split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip"):
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        return q > 0
    return False


def _not_modified(request: web.BaseRequest, feed: CachedFeed) -> bool:
    """RFC 9110 §13.1.2 and §13.1.3; If-None-Match wins over If-Modified-Since."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        if inm == feed.feed.etag or inm == feed.gzip_etag:  # the common case: one tag
            return True
        if inm.strip() == "*":
            return True
        return any(t.strip().removeprefix("W/") in (feed.feed.etag, feed.gzip_etag)
                   for t in inm.split(","))
    if "If-Modified-Since" in request.headers:
        since = request.if_modified_since
        return since is not None and feed.feed.modified <= since
    return False


@routes.get(r"/feeds/{token}.ics", name="feed", allow_head=True)
async def get_feed(request: web.Request) -> web.StreamResponse:
    if len(request.query_string) > MAX_QUERY:
        return web.Response(status=414, text="Query string too long\n")
    return await answer(request, request.app[FEEDS], request.match_info["token"])


async def answer(request: web.BaseRequest, feeds: FeedServer, token: str) -> web.Response:
    """200 or 304 with the token's feed, or 404."""
    feed = await feeds.lookup(token)
    if feed is None:
        return _not_found()
    gz = _accepts_gzip(request)
    if _not_modified(request, feed):
        return web.Response(status=304, headers=feed.headers_304[gz])
    body = await feeds.gzip_body(feed) if gz else feed.feed.body
    return web.Response(body=body, headers=feed.headers_200[gz])


# A GET or HEAD of a feed as calendar apps send it: the token as issued, a short
# query at most. Anything else takes the router's way (same answers, slower).
_PLAIN_FEED = re.compile(r"/feeds/([A-Za-z0-9_-]{43})\.ics(?:\?[^#]{0,"
                         + str(MAX_QUERY) + "})?")
FEED_ROUTE = "/feeds/{token}.ics"  # its name in metrics and the access log


def serve_feeds_first(app: web.Application, record: Record) -> None:
    """Answer plain feed requests ahead of aiohttp's router and middleware.

    A polled feed is the server's most frequent request by far, and its 304
    is a few microseconds of work; aiohttp's per-app middleware chain (ours
    plus the `current_app` wrapper aiohttp adds to every app) cost a third
    more than the answer itself. So the app's request handler first checks
    for a well-formed feed path and answers it directly, recording its
    metrics and access-log line as the middleware would; every other
    request, including malformed feed paths, goes through the router.

    aiohttp builds its server from `app._handle` (AppRunner, TestServer,
    run_app); replacing it on this one app is the only hook before the
    router that it offers. tests/feeds/test_feed_http.py checks that feed
    requests take this path and that both paths answer the same."""
    routed = app._handle
    match = _PLAIN_FEED.fullmatch

    async def handle(request: web.Request) -> web.StreamResponse:
        method = request.method
        found = match(request.raw_path) if method == "GET" or method == "HEAD" else None
        if found is None:
            return await routed(request)
        start = time.perf_counter()
        status = 500
        try:
            response = await answer(request, app[FEEDS], found[1])
            status = response.status
            return response
        except Exception:
            log.exception("unhandled error on %s %s", method, FEED_ROUTE)
            return web.Response(status=500, text="internal server error")
        finally:
            record(request, FEED_ROUTE, status, start)

    app._handle = handle  # type: ignore[method-assign]


# --- API ------------------------------------------------------------------------------------

def _actor(request: web.Request) -> repo.Actor:
    label = request.headers.get("X-Calbridge-Actor", "")[:200]
    return repo.Actor("api", label or "api-key")


async def _link_json(request: web.Request, feed_id: int) -> dict[str, Any]:
    app = request.app

    def unit(s: Any) -> dict[str, Any]:
        link = service.get_feed(s, company_id(request), feed_id)
        return service.link_json(s, link, app[SECRET], app[SETTINGS].base_url)

    return await app[DB].read(unit)


@routes.get("/api/v1/feeds", name="feeds")
async def list_feeds(request: web.Request) -> web.Response:
    only_params(request, {"include_revoked"})
    include = request.query.get("include_revoked", "false").lower() in ("1", "true", "yes")
    app = request.app

    def unit(s: Any) -> list[dict[str, Any]]:
        return [service.link_json(s, link, app[SECRET], app[SETTINGS].base_url)
                for link in service.list_feeds(s, company_id(request), include_revoked=include)]

    return json_response({"items": await app[DB].read(unit)})


@routes.post("/api/v1/feeds")
async def create_feed(request: web.Request) -> web.Response:
    payload = await json_body(request)
    app = request.app

    def unit(s: Any) -> dict[str, Any]:
        link = service.create_feed(s, company_id(request), payload, app[SECRET], _actor(request))
        return service.link_json(s, link, app[SECRET], app[SETTINGS].base_url)

    data = await app[DB].write(unit)
    return json_response(data, status=201, headers={"Location": f"/api/v1/feeds/{data['id']}"})


@routes.get("/api/v1/feeds/{feed_id}", name="feed_item")
async def get_feed_link(request: web.Request) -> web.Response:
    return json_response(await _link_json(request, match_id(request, "feed_id")))


async def _change_link(request: web.Request, change: Callable[..., Any]) -> web.Response:
    """Run `change(session, company id, feed id, …)` and answer with the link."""
    feed_id = match_id(request, "feed_id")
    app = request.app

    def unit(s: Any) -> dict[str, Any]:
        link = change(s, company_id(request), feed_id, _actor(request))
        return service.link_json(s, link, app[SECRET], app[SETTINGS].base_url)

    return json_response(await app[DB].write(unit))


@routes.post("/api/v1/feeds/{feed_id}/rotate")
async def rotate_feed(request: web.Request) -> web.Response:
    secret = request.app[SECRET]
    return await _change_link(
        request, lambda s, cid, fid, actor: service.rotate_feed(s, cid, fid, secret, actor))


@routes.post("/api/v1/feeds/{feed_id}/revoke")
async def revoke_feed(request: web.Request) -> web.Response:
    return await _change_link(request, service.revoke_feed)


@routes.delete("/api/v1/feeds/{feed_id}")
async def delete_feed(request: web.Request) -> web.Response:
    """DELETE is revoke (the row stays for the audit trail)."""
    feed_id = match_id(request, "feed_id")
    app = request.app
    await app[DB].write(lambda s: service.revoke_feed(s, company_id(request), feed_id,
                                                      _actor(request)))
    return web.Response(status=204)


_FEED_ID = [_id("feed_id")]
add_paths({
    "/api/v1/feeds": {
        "get": op("List feed links (with their URLs while live)", {"200": _json(_list_of("FeedLink"))},
                  params=[_q("include_revoked", {"type": "boolean"})], tag="feeds"),
        "post": op("Create a feed link for a staff member, a group or the company",
                   {"201": _json(ref("FeedLink"), "Created")}, body="FeedLinkInput", tag="feeds"),
    },
    "/api/v1/feeds/{feed_id}": {
        "get": op("Read a feed link", {"200": _json(ref("FeedLink"))}, params=_FEED_ID,
                  tag="feeds"),
        "delete": op("Revoke a feed link", {"204": {"description": "Revoked"}}, params=_FEED_ID,
                     tag="feeds"),
    },
    "/api/v1/feeds/{feed_id}/rotate": {
        "post": op("New URL for a feed link; the old one answers 404 from now on",
                   {"200": _json(ref("FeedLink")), "409": _problem("The link is revoked")},
                   params=_FEED_ID, tag="feeds"),
    },
    "/api/v1/feeds/{feed_id}/revoke": {
        "post": op("Revoke a feed link for good (idempotent)", {"200": _json(ref("FeedLink"))},
                   params=_FEED_ID, tag="feeds"),
    },
}, {
    "FeedLinkInput": {
        "type": "object",
        "description": "staff_id, group_id, or scope company",
        "properties": {
            "scope": {"enum": ["staff", "group", "company"]},
            "staff_id": {"type": "integer"},
            "group_id": {"type": "integer"},
            "privacy": {"enum": ["full", "limited", "busy"], "default": "full"},
            "label": {"type": "string", "maxLength": 200},
        },
    },
    "FeedLink": {
        "type": "object",
        "required": ["id", "scope", "privacy", "name", "status"],
        "properties": {
            "id": {"type": "integer"},
            "scope": {"enum": ["staff", "group", "company"]},
            "staff_id": {"type": ["integer", "null"]},
            "group_id": {"type": ["integer", "null"]},
            "privacy": {"enum": ["full", "limited", "busy"]},
            "label": {"type": "string"},
            "name": {"type": "string", "description": "X-WR-CALNAME of the feed"},
            "status": {"enum": ["active", "revoked"]},
            "created_at": {"type": "string", "format": "date-time"},
            "rotated_at": {"type": ["string", "null"], "format": "date-time"},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
            "urls": {
                "type": "object",
                "description": "Only while the link is live",
                "properties": {k: {"type": "string", "format": "uri"}
                               for k in ("https", "webcal", "google", "outlook")},
            },
        },
    },
})


def setup(app: web.Application, record: Record | None = None) -> None:
    """Add the feed routes and the per-worker `FeedServer` to the app; with
    `record`, feed requests are answered ahead of the router (`serve_feeds_first`)."""

    async def feeds_ctx(app: web.Application) -> AsyncIterator[None]:
        app[FEEDS] = FeedServer(app[DB], app[SETTINGS], app[SECRET])
        yield
        await app[FEEDS].close()

    app.cleanup_ctx.append(feeds_ctx)
    app.router.add_routes(routes)
    if record is not None:
        serve_feeds_first(app, record)
