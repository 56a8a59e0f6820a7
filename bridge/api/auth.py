"""API-key authentication: `Authorization: Bearer <key>` -> the key's company.

Every /api/v1 route except the OpenAPI document needs a key; the company id
is kept on the request and every unit of work is scoped to it, so a key of
company A sees 404 for anything of company B.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from bridge.api.http import revalidate
from bridge.db import repo
from bridge.errors import Unauthorized
from bridge.keys import DB, SECRET

COMPANY_ID = web.RequestKey("company_id", int)
PUBLIC = {"/api/v1/openapi.json"}


async def api_request(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Run an /api/ request (the app's middleware sends them here): check its
    key unless the path is public, then answer its conditional GET."""
    if request.path not in PUBLIC:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        db = request.app[DB]
        company = await db.read(repo.company_for_api_key, key.strip(), request.app[SECRET])
        if company is None:
            raise Unauthorized("unknown or revoked API key")
        request[COMPANY_ID] = company.id
    return revalidate(request, await handler(request))


def company_id(request: web.Request) -> int:
    return request[COMPANY_ID]
