"""The application factory: wiring only.

`create_app(settings)` builds the aiohttp application: the database (opened
and closed in `cleanup_ctx`), the one middleware (API keys, errors,
metrics and the access log) and each feature's routes. No rules live here.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.accesslog import AccessLog
from bridge.api import routes as api_routes
from bridge.api.auth import api_request
from bridge.api.http import client_address
from bridge.api.openapi import openapi_handler
from bridge.api.problems import error_response
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

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


Record = Callable[[web.BaseRequest, str, int, float], None]


def make_recorder(metrics: Metrics, access_log: AccessLog | None, trust_proxy: bool) -> Record:
    """`record(request, route, status, start)`: the request's metrics and
    access-log line (`start` is its `time.perf_counter()`)."""
    observe = metrics.observe
    log = access_log.add if access_log is not None else None

    def record(request: web.BaseRequest, route: str, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        observe(request.method, route, status, elapsed)
        if log is not None:
            log(request.method, request.path, route, status, elapsed,
                client_address(request, trust_proxy) if trust_proxy else request.remote or "")

    return record


def make_middleware(record: Record) -> Middleware:
    """The app's one middleware (every layer costs a feed 304 microseconds):
    API keys and conditional GETs on /api/, exceptions turned into answers,
    and metrics and the access log for every request."""
    routes: dict[web.AbstractRoute, str] = {}  # route -> its pattern, for metrics and the log

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            try:
                if request.path.startswith("/api/"):
                    response = await api_request(request, handler)
                else:
                    response = await handler(request)
            except Exception as exc:
                response = error_response(request, exc)  # or raises an HTTP answer
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            matched = request.match_info.route
            route = routes.get(matched)
            if route is None:
                resource = matched.resource  # None: aiohttp's 404 and 405 answers
                route = "unmatched" if resource is None else resource.canonical
                if resource is not None:
                    routes[matched] = route
            record(request, route, status, start)

    return middleware


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
    meter = Metrics()
    access_log = (AccessLog(settings.server.access_log_flush_seconds)
                  if settings.server.access_log else None)
    record = make_recorder(meter, access_log, settings.server.trust_proxy)
    app = web.Application(client_max_size=settings.server.max_body_bytes,
                          middlewares=[make_middleware(record)])
    app[SETTINGS] = settings
    app[METRICS] = meter
    app[SECRET] = settings.secret()
    app[DB] = database or Database(settings.database)
    if access_log is not None:
        app[ACCESS_LOG] = access_log
        app.cleanup_ctx.append(lambda app: access_log.run())

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
    feed_routes.setup(app, record)
    dav_routes.setup(app)
    app.add_subapp("/admin", console_app())
    return app
