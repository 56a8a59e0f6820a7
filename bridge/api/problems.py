"""RFC 9457 problem responses: the one place the API chooses status codes.

`error_response` turns every `BridgeError` (and aiohttp's own HTTP errors
on API paths) into `application/problem+json` with a human message and the
offending field. Unexpected exceptions become a 500 without internals.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from bridge import errors

log = logging.getLogger("calbridge.api")

STATUS: dict[type[errors.BridgeError], int] = {
    errors.Invalid: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.Forbidden: 403,
    errors.Unauthorized: 401,
    errors.TooLarge: 413,
    errors.Gone: 410,
    errors.SyncTokenInvalid: 400,
}


class BadRequest(errors.BridgeError):
    title = "Bad request"


STATUS[BadRequest] = 400


def status_of(exc: errors.BridgeError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 400


def problem(status: int, title: str, detail: str, field: str | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field:
        body["field"] = field
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/problem+json",
        headers=headers,
    )


def error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The answer to an exception out of a handler (called by the app's
    middleware): problem+json for a `BridgeError` anywhere and for HTTP
    errors on API paths; aiohttp's own HTTP answers elsewhere are re-raised;
    anything unexpected is logged and becomes a 500 without internals."""
    is_api = request.path.startswith("/api/")
    if isinstance(exc, errors.BridgeError):
        status = status_of(exc)
        headers = {"WWW-Authenticate": 'Bearer realm="calbridge"'} if status == 401 else None
        return problem(status, exc.title, exc.message, exc.field, headers)
    if isinstance(exc, web.HTTPException):
        if not is_api or exc.status < 400:
            raise exc
        detail = exc.text or exc.reason
        if exc.status == 413:
            detail = "the request body is larger than the configured limit"
        return problem(exc.status, exc.reason, detail or exc.reason,
                       headers={k: v for k, v in exc.headers.items() if k == "Allow"})
    resource = request.match_info.route.resource
    log.error("unhandled error on %s %s", request.method, resource and resource.canonical,
              exc_info=exc)
    if is_api:
        return problem(500, "Internal server error", "the server failed; it has been logged")
    raise web.HTTPInternalServerError(text="internal server error") from None
