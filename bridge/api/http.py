"""Small request/response helpers shared by every API route module:
JSON bodies, query parameters, ETag headers and preconditions."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from aiohttp import web

from bridge.api.problems import BadRequest
from bridge.errors import Invalid, PreconditionFailed


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/415 problem."""
    ctype = request.content_type
    if ctype not in ("application/json", "application/merge-patch+json"):
        raise web.HTTPUnsupportedMediaType(text="send the body as application/json")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def json_response(data: Any, *, status: int = 200, etag: str | None = None,
                  headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response with an ETag: the resource's own, or for a 200 read
    without one (lists), a hash of the body, so every read can be revalidated."""
    hdrs = dict(headers or {})
    text = json.dumps(data)
    if etag is None and status == 200:
        etag = hashlib.sha256(text.encode()).hexdigest()[:32]
    if etag is not None:
        hdrs["ETag"] = f'"{etag}"'
    return web.Response(status=status, text=text, content_type="application/json", headers=hdrs)


def revalidate(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """RFC 9110 §13.1.2: a GET whose If-None-Match names the current ETag gets 304."""
    inm = request.headers.get("If-None-Match")
    if inm is None or request.method not in ("GET", "HEAD") or response.status != 200:
        return response
    etag = response.headers.get("ETag")
    tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
    if etag is not None and (etag in tags or "*" in tags):
        return web.Response(status=304, headers={"ETag": etag})
    return response


def if_match(request: web.Request) -> str | None:
    """The single strong ETag in If-Match, unquoted; '*' means any."""
    value = request.headers.get("If-Match")
    if value is None:
        return None
    value = value.strip()
    if value == "*":
        return None
    if value.startswith("W/") or not (value.startswith('"') and value.endswith('"')) or "," in value:
        raise PreconditionFailed("If-Match must be one strong ETag as returned by a read")
    return value[1:-1]


def version_match(request: web.Request) -> int | None:
    """If-Match for resources whose ETag is "v<version>"."""
    tag = if_match(request)
    if tag is None:
        return None
    if not tag.startswith("v") or not tag[1:].isdigit():
        raise PreconditionFailed("If-Match does not match the current version")
    return int(tag[1:])


def query_int(request: web.Request, name: str, default: int, *, low: int = 0, high: int = 1000) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"{name} must be an integer", field=name) from None
    if not low <= value <= high:
        raise Invalid(f"{name} must be between {low} and {high}", field=name)
    return value


def query_optional_int(request: web.Request, name: str) -> int | None:
    if name not in request.query:
        return None
    return query_int(request, name, 0, low=1, high=2**62)


def query_datetime(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise Invalid(f"{name} must be an ISO 8601 date-time with an offset", field=name) from None
    if value.tzinfo is None:
        raise Invalid(f"{name} must include a UTC offset (Z or +hh:mm)", field=name)
    return value


def only_params(request: web.Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise Invalid(f"unknown query parameter {unknown[0]!r}", field=unknown[0])


def match_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        from bridge.errors import NotFound

        raise NotFound(f"no such {name.removesuffix('_id')}", field=name)
    return int(raw)


def client_address(request: web.BaseRequest, trust_proxy: bool) -> str:
    """The client's address for rate limits and logs. Behind a proxy we run
    (`[server] trust_proxy`), the last X-Forwarded-For hop is the one our proxy
    added; earlier hops are whatever the client sent, so they are not trusted."""
    if trust_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]
    return request.remote or ""
