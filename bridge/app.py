"""The application factory: wiring only.

`create_app(settings)` builds the aiohttp application: the database (opened
and closed in `cleanup_ctx`), middlewares (access log and metrics, errors,
API keys) and each feature's routes. No rules live here.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bridge.accesslog import AccessLog
from bridge.api import routes as api_routes
from bridge.api.auth import api_key_middleware
from bridge.api.http import client_address
from bridge.api.openapi import openapi_handler
from bridge.api.problems import error_middleware
from bridge.availability import routes as availability_routes
from bridge.changes import routes as change_routes
from bridge.config import Settings
from bridge.dav import routes as dav_routes
from bridge.db.engine import Database
from bridge.feeds import routes as feed_routes
from bridge.keys import ACCESS_LOG, DB, METRICS, SECRET, SETTINGS
from bridge.metrics import Metrics
from bridge.notify import webhooks_routes, webhooks_worker
from bridge.sync import routes as sync_routes
from bridge.sync.scheduler import syncer_ctx
from bridge.web.routes import console_app


@web.middleware
async def observe_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - start
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        app = request.app
        app[METRICS].observe(request.method, route, status, elapsed)
        log = app.get(ACCESS_LOG)
        if log is not None:
            remote = client_address(request, app[SETTINGS].server.trust_proxy)
            log.add(request.method, request.path, route, status, elapsed, remote)


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[DB].ping()
    except Exception as exc:  # the database is down: say so, do not crash
        return web.json_response({"status": "fail", "database": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok", "database": "ok", "worker": os.getpid()})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(),
                        content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


def create_app(settings: Settings, *, database: Database | None = None) -> web.Application:
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[observe_middleware, error_middleware, api_key_middleware],
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[SECRET] = settings.secret()
    app[DB] = database or Database(settings.database)
    if settings.server.access_log:
        app[ACCESS_LOG] = AccessLog(settings.server.access_log_flush_seconds)
        app.cleanup_ctx.append(lambda app: app[ACCESS_LOG].run())

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[DB].dispose()

    app.cleanup_ctx.append(database_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi_handler)
    app.router.add_routes(api_routes.routes)
    change_routes.setup(app)
    app.router.add_routes(webhooks_routes.routes)
    app.cleanup_ctx.append(webhooks_worker.worker_ctx)
    app.router.add_routes(sync_routes.routes)
    app.router.add_routes(availability_routes.routes)
    app.cleanup_ctx.append(syncer_ctx)
    feed_routes.setup(app)
    dav_routes.setup(app)
    app.add_subapp("/admin", console_app())
    return app
