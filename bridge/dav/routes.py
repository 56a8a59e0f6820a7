"""aiohttp side of CalDAV: the Radicale WSGI app under /dav, discovery, app-password API.

- `/dav{path:(/.*)?}`: every method is handed to Radicale's
  `Application` in a thread pool (Radicale and the storage plugin are
  synchronous), so a CalDAV request never blocks the event loop. The body is
  read here with the `[caldav] max_body_bytes` limit (413 above it). A
  client's `X-Script-Name` is dropped: Radicale would take it as the mount
  point and rewrite every href. After Radicale answers, the plugin boundary
  (`radicale_plugins.backend`) may replace the status with the one its error
  calls for, or drop the ETag of a PUT that stored something else than the
  body (RFC 4791 §5.3.4).
- `/.well-known/caldav` (RFC 6764 §5) redirects to `/dav/` with the scheme
  and host the client used (`X-Forwarded-Proto/Host` only with
  `[server] trust_proxy`).
- `/api/v1/staff/{id}/app-passwords`: issue (shown once), list, revoke.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import radicale.config
from aiohttp import web
from multidict import CIMultiDict
from radicale import pathutils as radicale_pathutils
from radicale.app import Application as RadicaleApplication

from bridge.api.auth import company_id
from bridge.api.http import client_address, json_body, json_response, match_id
from bridge.api.openapi import _id, _json, _list_of, add_paths, op, ref
from bridge.config import Settings
from bridge.dav import freebusy, listing, passwords
from bridge.db import repo
from bridge.db.engine import Database
from bridge.errors import Invalid, TooLarge
from bridge.keys import DB, SETTINGS
from radicale_plugins import backend as plugin_backend
from radicale_plugins import storage as plugin_storage

log = logging.getLogger("calbridge.dav")
PREFIX = "/dav"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def radicale_config(settings: Settings) -> Any:
    """Radicale's configuration for calbridge: our plugins, no web UI, our limits."""
    configuration = radicale.config.load()
    configuration.update({
        "auth": {"type": "radicale_plugins.auth", "realm": "calbridge CalDAV",
                 "delay": "0", "lc_username": "True"},  # limits: passwords.login
        "rights": {"type": "radicale_plugins.rights"},
        "storage": {"type": "radicale_plugins.storage",
                    "database_url": settings.database.url},
        "web": {"type": "none"},
        "server": {"max_content_length": str(settings.caldav.max_body_bytes * 2),
                   "max_resource_size": str(settings.caldav.max_body_bytes),
                   "max_vevent_rrule_occurrence": str(settings.caldav.max_occurrences),
                   "delay_on_error": "0"},
        "reporting": {"max_expand_occurrence": str(settings.caldav.max_occurrences)},
        "logging": {"level": "warning", "mask_passwords": "True"},
    }, "calbridge", privileged=True)
    return configuration


@dataclass
class DavMount:
    """One Radicale application and the threads that run it."""

    app: Any
    executor: ThreadPoolExecutor
    settings: Settings
    db: Database

    def call(self, environ: dict[str, Any], body_text: str | None
             ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Run one request (in a worker thread): a calendar listing from SQL,
        anything else through Radicale."""
        def through_radicale(env: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
            return self.radicale(env, None)

        for fast_path in (listing.answer, listing.answer_query):
            fast = fast_path(self.db, environ, through_radicale)
            if fast is not None:
                return fast
        return self.radicale(environ, body_text)

    def radicale(self, environ: dict[str, Any], body_text: str | None
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Run one request through Radicale, then apply the plugin boundary's verdict."""
        plugin_backend.reset_outcome()
        plugin_storage.set_body(body_text)
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        try:
            chunks = self.app(environ, start_response)
            payload = b"".join(chunks)
        finally:
            plugin_storage.set_body(None)
            outcome = plugin_backend.take_outcome()
        status = int(str(captured["status"]).split(" ", 1)[0])
        headers = list(captured["headers"])
        if outcome.error is not None:
            status, payload = plugin_backend.status_for(outcome.error)
            headers = [("Content-Type", "application/xml; charset=utf-8")]
        elif outcome.drop_etag and status < 300:
            headers = [(k, v) for k, v in headers if k.lower() != "etag"]
        return status, headers, payload


DAV = web.AppKey("dav", DavMount)


def _memoise_radicale_paths() -> None:
    """Radicale re-sanitises every href it writes into a multistatus
    (`assert href == sanitize_path(href)` in `xmlutils.make_href`), which is
    a third of a 500-item REPORT. The function is pure: remember its answers."""
    if not hasattr(radicale_pathutils.sanitize_path, "cache_info"):
        radicale_pathutils.sanitize_path = functools.lru_cache(maxsize=65_536)(
            radicale_pathutils.sanitize_path)


def build_mount(settings: Settings, db: Database) -> DavMount:
    _memoise_radicale_paths()
    plugin_backend.register(settings, db)
    app = RadicaleApplication(radicale_config(settings))
    workers = max(4, min(32, settings.database.pool_size))
    return DavMount(app, ThreadPoolExecutor(workers, thread_name_prefix="dav"), settings, db)


def _client_origin(request: web.Request, settings: Settings) -> tuple[str, str]:
    scheme, host = request.scheme, request.host
    if settings.server.trust_proxy:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return scheme, host




def _environ(request: web.Request, body: bytes, settings: Settings) -> dict[str, Any]:
    scheme, host = _client_origin(request, settings)
    path = request.path[len(PREFIX):]
    name, _, port = host.partition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": PREFIX,
        "PATH_INFO": path,
        "QUERY_STRING": request.query_string,
        "SERVER_NAME": name or "localhost",
        "SERVER_PORT": port or ("443" if scheme == "https" else "80"),
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "REMOTE_ADDR": client_address(request, settings.server.trust_proxy),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": scheme,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    if scheme == "https":
        environ["HTTPS"] = "on"
    for key, value in request.headers.items():
        upper = key.upper().replace("-", "_")
        if upper in ("X_SCRIPT_NAME", "CONTENT_LENGTH"):
            continue  # X-Script-Name would let a client rewrite every href
        if upper == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        name_ = f"HTTP_{upper}"
        environ[name_] = f"{environ[name_]},{value}" if name_ in environ else value
    return environ


def _too_large(limit: int) -> web.Response:
    status, body = plugin_backend.status_for(TooLarge(
        f"the body is larger than the limit of {limit} bytes"))
    return web.Response(status=status, body=body,
                        content_type="application/xml", charset="utf-8")


async def dav_handler(request: web.Request) -> web.StreamResponse:
    mount = request.app[DAV]
    limit = mount.settings.caldav.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65_536):
        size += len(chunk)
        if size > limit:  # a chunked body without Content-Length
            return _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    text: str | None = None
    if request.method == "PUT":
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = None
    environ = _environ(request, body, mount.settings)
    loop = asyncio.get_running_loop()
    status, headers, payload = await loop.run_in_executor(mount.executor, mount.call,
                                                          environ, text)
    if status == 200 and freebusy.is_free_busy_query(request.method, body):
        merged = await freebusy.merged_answer(request.app[DB], environ["PATH_INFO"], body)
        if merged is not None:
            payload = merged.encode()
            dropped = ("content-length", "etag", "content-encoding")
            headers = [(k, v) for k, v in headers if k.lower() not in dropped]
    out = CIMultiDict[str]()
    for key, value in headers:
        if key.lower() not in _HOP_BY_HOP:
            out.add(key, value)
    return web.Response(status=status, headers=out, body=payload if request.method != "HEAD"
                        else None)


async def well_known(request: web.Request) -> web.StreamResponse:
    scheme, host = _client_origin(request, request.app[SETTINGS])
    raise web.HTTPMovedPermanently(f"{scheme}://{host}{PREFIX}/")


# --- app passwords (booking-system API) ----------------------------------------------

def _actor(request: web.Request) -> repo.Actor:
    return repo.Actor("api", request.headers.get("X-Calbridge-Actor", "")[:200] or "api-key")


async def create_app_password(request: web.Request) -> web.Response:
    cid, sid = company_id(request), match_id(request, "staff_id")
    body = await json_body(request) if request.can_read_body else {}
    unknown = sorted(set(body) - {"label"})
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0])
    actor = _actor(request)
    settings = request.app[SETTINGS]

    def fn(s: Any) -> dict[str, Any]:
        row, password = passwords.create(s, cid, sid, body.get("label", ""), actor)
        staff = repo.get_staff(s, cid, sid)
        return passwords.app_password_json(row) | {
            "password": password,
            "caldav": {"url": f"{settings.base_url}{PREFIX}/", "username": staff.email},
        }

    data = await request.app[DB].write(fn)
    return json_response(data, status=201, headers={
        "Location": f"/api/v1/staff/{sid}/app-passwords/{data['id']}",
        "Cache-Control": "no-store"})


async def list_app_passwords(request: web.Request) -> web.Response:
    cid, sid = company_id(request), match_id(request, "staff_id")
    data = await request.app[DB].read(
        lambda s: [passwords.app_password_json(r) for r in passwords.list_for(s, cid, sid)])
    return json_response({"items": data})


async def revoke_app_password(request: web.Request) -> web.Response:
    cid, sid = company_id(request), match_id(request, "staff_id")
    pid = match_id(request, "pw_id")
    actor = _actor(request)
    await request.app[DB].write(lambda s: passwords.revoke(s, cid, sid, pid, actor))
    return web.Response(status=204)


_STAFF_ID = [_id("staff_id")]
add_paths({
    "/api/v1/staff/{staff_id}/app-passwords": {
        "post": op("Issue a CalDAV app password (the password is in this answer only)",
                   {"201": _json(ref("NewAppPassword"), "Created")}, params=_STAFF_ID,
                   body="AppPasswordInput", tag="caldav"),
        "get": op("List a staff member's app passwords (never the password or its hash)",
                  {"200": _json(_list_of("AppPassword"))}, params=_STAFF_ID, tag="caldav"),
    },
    "/api/v1/staff/{staff_id}/app-passwords/{pw_id}": {
        "delete": op("Revoke an app password (effective on the next request)",
                     {"204": {"description": "Revoked"}},
                     params=[*_STAFF_ID, _id("pw_id")], tag="caldav"),
    },
}, {
    "AppPasswordInput": {
        "type": "object", "additionalProperties": False,
        "properties": {"label": {"type": "string", "maxLength": 200}},
    },
    "AppPassword": {
        "type": "object",
        "required": ["id", "staff_id", "label", "created_at", "last_used_at", "revoked_at"],
        "properties": {
            "id": {"type": "integer"},
            "staff_id": {"type": "integer"},
            "label": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": ["string", "null"], "format": "date-time"},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "NewAppPassword": {
        "allOf": [ref("AppPassword"), {
            "type": "object", "required": ["password", "caldav"],
            "properties": {
                "password": {"type": "string"},
                "caldav": {"type": "object", "required": ["url", "username"], "properties": {
                    "url": {"type": "string"}, "username": {"type": "string"}}},
            },
        }],
    },
})


def setup(app: web.Application) -> None:
    """Add the CalDAV mount, discovery and app-password routes to `app`."""

    async def mount_ctx(app: web.Application) -> AsyncIterator[None]:
        mount = build_mount(app[SETTINGS], app[DB])
        app[DAV] = mount
        yield
        mount.executor.shutdown(wait=True)
        plugin_backend.unregister(app[SETTINGS])

    app.cleanup_ctx.append(mount_ctx)
    app.router.add_route("*", PREFIX + "{path:(/.*)?}", dav_handler)
    app.router.add_route("*", "/.well-known/caldav", well_known)
    app.router.add_post("/api/v1/staff/{staff_id}/app-passwords", create_app_password)
    app.router.add_get("/api/v1/staff/{staff_id}/app-passwords", list_app_passwords)
    app.router.add_delete("/api/v1/staff/{staff_id}/app-passwords/{pw_id}",
                          revoke_app_password)
