"""Talking to external calendars: ICS over HTTP and CalDAV accounts.

What belongs here: one read of a source with change detection, discovery
of a CalDAV account's calendars, and writing/deleting appointment objects
over CalDAV. Every failure becomes a `SourceError` whose `kind` decides the
link's health (`auth`: 401/403, at once; anything else counts towards
`failing`) and whose message never holds a secret (no URL token, no
password). What does not: the database (bridge.sync.service).

- ICS: a conditional GET (RFC 9110 §13.1.2 If-None-Match, §13.1.3
  If-Modified-Since); 304 costs one small request. `webcal://` is http(s).
- CalDAV (RFC 4791) with the `caldav` library (blocking: run in a thread):
  a depth-0 PROPFIND of the collection's sync-token (RFC 6578 §3) and
  CalendarServer getctag; only when one changed, a calendar-query with a
  time-range (RFC 4791 §7.8) reads the window.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

from bridge.errors import Invalid


class SourceError(Exception):
    """A read or write of an external calendar failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # auth | http | network | timeout | invalid | gone
        self.message = message


@dataclass
class ReadResult:
    changed: bool
    texts: list[str] = field(default_factory=list)  # ICS: the feed
    etag: str = ""
    last_modified: str = ""
    sync_token: str = ""
    ctag: str = ""
    # CalDAV: calendar object path -> text; with `incremental`, only the
    # objects changed since the last sync-token, and those `deleted`.
    items: dict[str, str] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    incremental: bool = False


# --- URLs ---------------------------------------------------------------------

def normalise_url(raw: Any, field_name: str) -> str:
    """An http(s) URL (webcal:// and webcals:// read as http/https)."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 2000:
        raise Invalid(f"{field_name} must be an http(s) or webcal URL", field=field_name)
    url = raw.strip()
    low = url.lower()
    if low.startswith("webcals://"):
        url = "https://" + url[len("webcals://"):]
    elif low.startswith("webcal://"):
        url = "https://" + url[len("webcal://"):]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{field_name} must be an http(s) or webcal URL", field=field_name)
    if any(c in url for c in " \r\n\t"):
        raise Invalid(f"{field_name} must not contain spaces", field=field_name)
    return url


def display_url(url: str) -> str:
    """What may be shown and logged: scheme, host and the path's first part.
    Secret addresses (Google's private URL) keep their token in the path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    path = parts.path.strip("/").split("/")[0] if parts.path.strip("/") else ""
    shown = urlunsplit((parts.scheme, host, "/" + path, "", ""))
    return shown + ("/…" if parts.path.strip("/") != path or parts.query else "")


async def check_address(url: str, allow_private: bool) -> None:
    """Refuse URLs whose host resolves to a loopback, private or link-local
    address (server-side request forgery) unless the config allows it."""
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise SourceError("network", f"cannot resolve {host}") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global:
            raise SourceError("forbidden", f"{host} is not a public address")


# --- ICS ----------------------------------------------------------------------

async def read_ics(http: aiohttp.ClientSession, url: str, *, etag: str, last_modified: str,
                   timeout_s: float, max_bytes: int, allow_private: bool,
                   conditional: bool = True) -> ReadResult:
    """One conditional GET; redirects are followed by hand (at most 5), each
    target checked like the first, so a redirect cannot reach a private
    address the link itself could not."""
    shown = display_url(url)
    headers = {"Accept": "text/calendar, */*;q=0.5", "User-Agent": "calbridge/1 (calendar sync)"}
    if conditional and etag:
        headers["If-None-Match"] = etag
    if conditional and last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(6):
                await check_address(url, allow_private)
                async with http.get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = normalise_url(urljoin(url, resp.headers["Location"]), "url")
                        continue
                    return await _ics_response(resp, shown, etag, last_modified, max_bytes)
            raise SourceError("http", f"{shown} redirects too often")
    except TimeoutError:
        raise SourceError("timeout", f"{shown} did not answer within {timeout_s:g} s") from None
    except Invalid:
        raise SourceError("http", f"{shown} redirects to an address that is not http(s)") from None
    except aiohttp.ClientError as exc:
        raise SourceError("network", f"cannot read {shown}: {type(exc).__name__}") from None


async def _ics_response(resp: aiohttp.ClientResponse, shown: str, etag: str,
                        last_modified: str, max_bytes: int) -> ReadResult:
    if resp.status == 304:
        return ReadResult(False, etag=etag, last_modified=last_modified)
    if resp.status in (401, 403):
        raise SourceError("auth", f"{shown} refused access (HTTP {resp.status})")
    if resp.status in (404, 410):
        raise SourceError("gone", f"{shown} is not there (HTTP {resp.status})")
    if resp.status != 200:
        raise SourceError("http", f"{shown} answered HTTP {resp.status}")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65_536):
        body += chunk
        if len(body) > max_bytes:
            raise SourceError("invalid", f"{shown} is larger than {max_bytes} bytes")
    # A content hash stands in for a ctag: feeds without validators (many)
    # then cost a download but no parse, expansion or write when unchanged.
    return ReadResult(True, [bytes(body).decode("utf-8-sig", errors="replace")],
                      etag=resp.headers.get("ETag", ""),
                      last_modified=resp.headers.get("Last-Modified", ""),
                      ctag="sha256:" + hashlib.sha256(body).hexdigest())


# --- CalDAV -------------------------------------------------------------------

def _caldav_errors(exc: Exception, where: str) -> SourceError:
    from caldav.lib import error as cerr

    if isinstance(exc, cerr.AuthorizationError):
        return SourceError("auth", f"{where} refused the username or password")
    if isinstance(exc, cerr.NotFoundError):
        return SourceError("gone", f"{where}: calendar not found")
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
        return SourceError("timeout", f"{where} did not answer in time")
    if isinstance(exc, cerr.DAVError):
        return SourceError("http", f"{where}: {type(exc).__name__}")
    if isinstance(exc, OSError | ConnectionError) or "connection" in type(exc).__name__.lower():
        return SourceError("network", f"cannot reach {where}")
    return SourceError("http", f"{where}: {type(exc).__name__}")


def _client(server_url: str, username: str, password: str, timeout: float) -> Any:
    from caldav import DAVClient

    client: Any = DAVClient
    return client(url=server_url, username=username, password=password, timeout=timeout)


def _check_status(resp: Any, where: str) -> None:
    status = getattr(resp, "status", 200)
    if status in (401, 403):
        raise SourceError("auth", f"{where} refused the username or password")
    if status == 404:
        raise SourceError("gone", f"{where}: calendar not found")
    if status >= 400:
        raise SourceError("http", f"{where} answered HTTP {status}")


def discover(server_url: str, username: str, password: str, timeout: float) -> list[dict[str, Any]]:
    """The account's calendars that hold events: url, name."""
    where = display_url(server_url)
    try:
        with _client(server_url, username, password, timeout) as client:
            calendars = client.principal().calendars()
            out = []
            for cal in calendars:
                try:
                    comps = cal.get_supported_components()
                except Exception:
                    comps = ["VEVENT"]
                if "VEVENT" not in comps:
                    continue
                out.append({"url": str(cal.url), "name": cal.get_display_name() or ""})
            return out
    except SourceError:
        raise
    except Exception as exc:
        raise _caldav_errors(exc, where) from None


_PROPFIND = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/">'
    "<d:prop><d:sync-token/><cs:getctag/></d:prop></d:propfind>"
)


def _collection_state(client: Any, url: str, where: str) -> tuple[str, str]:
    resp = client.propfind(url, _PROPFIND, depth=0)
    _check_status(resp, where)
    tree: Any = resp.tree
    if tree is None:
        raise SourceError("http", f"{where} answered PROPFIND without a body")
    token = tree.findtext(".//{DAV:}sync-token") or ""
    ctag = tree.findtext(".//{http://calendarserver.org/ns/}getctag") or ""
    return token.strip(), ctag.strip()


def _path(url: Any) -> str:
    return urlsplit(str(url)).path


def read_caldav(server_url: str, username: str, password: str, calendar_url: str, *,
                sync_token: str, ctag: str, start: Any, end: Any, timeout: float,
                conditional: bool = True) -> ReadResult:
    """Unchanged token/ctag: one PROPFIND. Changed, with a previous token: a
    sync-collection REPORT (RFC 6578 §3.2) and a GET per changed object.
    Otherwise (first read, daily full read, server without sync or a token
    it no longer accepts): a calendar-query over the window."""
    where = display_url(calendar_url or server_url)
    try:
        with _client(server_url, username, password, timeout) as client:
            token, tag = _collection_state(client, calendar_url, where)
            if conditional and (token or tag) and token == sync_token and tag == ctag:
                return ReadResult(False, sync_token=token, ctag=tag)
            calendar = client.calendar(url=calendar_url)
            if conditional and sync_token and token:
                delta = _sync_delta(calendar, sync_token)
                if delta is not None:
                    delta.ctag = tag
                    delta.sync_token = delta.sync_token or token
                    return delta
            objects = calendar.search(start=start, end=end, event=True, expand=False)
            items = {_path(o.url): o.data for o in objects if o.data}
            return ReadResult(True, items=items, sync_token=token, ctag=tag)
    except SourceError:
        raise
    except Exception as exc:
        raise _caldav_errors(exc, where) from None


def _sync_delta(calendar: Any, sync_token: str) -> ReadResult | None:
    """The objects changed since `sync_token`, or None when the server
    cannot say (then the caller reads the window in full)."""
    try:
        coll = calendar.get_objects_by_sync_token(sync_token=sync_token, load_objects=True,
                                                  disable_fallback=True)
    except Exception:
        # Includes 403 DAV:valid-sync-token (RFC 6578 §3.2), which the library
        # reports as an authorization error: the PROPFIND just before passed
        # with the same credentials, so it is not one.
        return None
    deleted = sorted({_path(u) for u in coll.deleted_urls})
    items = {_path(o.url): o.data for o in coll.objects
             if _path(o.url) not in deleted and o.data}
    return ReadResult(True, items=items, deleted=deleted, incremental=True,
                      sync_token=str(coll.sync_token or ""))


@dataclass
class PushOp:
    appointment_id: int
    action: str  # put | delete
    href: str
    text: str = ""


@dataclass
class PushDone:
    appointment_id: int
    action: str
    href: str
    etag: str = ""


def push_caldav(server_url: str, username: str, password: str, calendar_url: str,
                ops: list[PushOp], timeout: float) -> tuple[list[PushDone], SourceError | None]:
    """PUT/DELETE each object at its stable href; a PUT to the same href
    replaces, so a retry never duplicates. Stops at the first failure."""
    where = display_url(calendar_url or server_url)
    done: list[PushDone] = []
    try:
        with _client(server_url, username, password, timeout) as client:
            for op in ops:
                url = urljoin(calendar_url, op.href)
                if op.action == "put":
                    resp = client.put(url, op.text, {"Content-Type": "text/calendar; charset=utf-8"})
                    _check_status(resp, where)
                    etag = resp.headers.get("ETag", "") if getattr(resp, "headers", None) else ""
                    done.append(PushDone(op.appointment_id, "put", op.href, etag))
                else:
                    resp = client.delete(url)
                    if getattr(resp, "status", 200) != 404:
                        _check_status(resp, where)
                    done.append(PushDone(op.appointment_id, "delete", op.href))
    except SourceError as exc:
        return done, exc
    except Exception as exc:
        return done, _caldav_errors(exc, where)
    return done, None
