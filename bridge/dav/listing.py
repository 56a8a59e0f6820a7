"""PROPFIND Depth 1 on a calendar, answered from one SQL query (RFC 4918 §9.1).

Clients list a calendar with `PROPFIND Depth: 1` asking for the ETags (and
the content type, resource type, last-modified) of every item, then fetch
what changed. Radicale builds an ElementTree per item for that, about 75 µs
each: 0.75 s for 10,000 events. When the request asks only for those four
DAV properties of a calendar collection, `answer` lets Radicale answer
Depth 0 for the collection itself (so authentication, rights and the
collection's properties stay Radicale's), then appends one response per item
from a columns-only query. Anything else — other properties, `allprop`,
`propname`, other collections — returns None and Radicale answers alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]

from bridge.dav import service
from bridge.db.engine import Database

DAV = "{DAV:}"
ITEM_PROPS = {f"{DAV}getetag", f"{DAV}getcontenttype", f"{DAV}resourcetype",
              f"{DAV}getlastmodified"}
CONTENT_TYPE = "text/calendar;charset=utf-8;component=VEVENT"
ROOT_START = '<multistatus xmlns="DAV:"'  # DAV: is the default namespace


def wanted_props(body: bytes) -> list[str] | None:
    """The DAV properties asked for, if the fast path can answer them all."""
    if not body.strip():
        return None  # an empty body means allprop
    try:
        root = SafeET.fromstring(body)
    except Exception:  # malformed or hostile XML: Radicale answers (and refuses) it
        return None
    if root.tag != f"{DAV}propfind" or len(root) != 1 or root[0].tag != f"{DAV}prop":
        return None
    props = [child.tag for child in root[0]]
    if not props or not set(props) <= ITEM_PROPS:
        return None
    return props


def _scope(db: Database, path: str) -> service.Scope | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) != 2:
        return None
    with db.sync_session() as s:
        staff = service.active_staff(s, parts[0])
        if staff is None or staff.email != parts[0]:
            return None
        if parts[1] == "calendar":
            return service.Scope("calendar", staff.company_id, staff.id)
        if parts[1].startswith("group-"):
            group = service.group_of(s, staff, parts[1][len("group-"):])
            if group is not None:
                return service.Scope("group", staff.company_id, staff.id, group.id)
    return None


def _item_xml(prefix: str, href: str, props: list[str], etag: str, modified: str) -> str:
    """One DAV:response; `prefix` is already percent-encoded."""
    values = {
        f"{DAV}getetag": f'<getetag>"{etag}"</getetag>',
        f"{DAV}getcontenttype": f"<getcontenttype>{CONTENT_TYPE}</getcontenttype>",
        f"{DAV}resourcetype": "<resourcetype />",
        f"{DAV}getlastmodified": f"<getlastmodified>{modified}</getlastmodified>",
    }
    inner = "".join(values[p] for p in props)
    return (f"<response><href>{prefix}{escape(quote(href))}</href><propstat><prop>{inner}"
            "</prop><status>HTTP/1.1 200 OK</status></propstat></response>")


def answer(db: Database, environ: dict[str, Any],
           call_radicale: Callable[[dict[str, Any]], tuple[int, list[tuple[str, str]], bytes]],
           ) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """The whole PROPFIND answer, or None when Radicale must answer it."""
    if environ.get("REQUEST_METHOD") != "PROPFIND" or environ.get("HTTP_DEPTH") != "1":
        return None
    body: bytes = environ["wsgi.input"].getvalue()
    props = wanted_props(body)
    path = str(environ.get("PATH_INFO", ""))
    scope = _scope(db, path) if props is not None and path.endswith("/") else None
    if props is None or scope is None:
        return None
    head = dict(environ, HTTP_DEPTH="0")
    head.pop("HTTP_ACCEPT_ENCODING", None)  # the collection's part must stay splice-able
    head["wsgi.input"] = type(environ["wsgi.input"])(body)
    status, headers, payload = call_radicale(head)
    text = payload.decode("utf-8")
    end = text.rfind("</multistatus>")
    if status != 207:
        return status, headers, payload  # refused (401/403/404): that is the answer
    if ROOT_START not in text or end < 0:
        return None  # not a shape we can extend: Radicale answers in full
    with db.sync_session() as s:
        rows = service.item_listing(s, scope)
    prefix = escape(quote(f"{environ.get('SCRIPT_NAME', '')}{path}"))
    items = "".join(_item_xml(prefix, href, props, etag, modified)
                    for href, etag, modified in rows)
    out = (text[:end] + items + text[end:]).encode("utf-8")
    headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "etag")]
    return status, headers, out
