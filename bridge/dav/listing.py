"""Calendar listings and week queries answered from SQL (RFC 4918 §9.1, RFC 4791 §7.8).

Clients list a calendar with `PROPFIND Depth: 1` asking for the ETags (and
the content type, resource type, last-modified) of every item, then fetch
what changed. Radicale builds an ElementTree per item for that, about 75 µs
each: 0.75 s for 10,000 events. When the request asks only for those four
DAV properties of a calendar collection, `answer` lets Radicale answer
Depth 0 for the collection itself (so authentication, rights and the
collection's properties stay Radicale's), then appends one response per item
from a columns-only query. Anything else — other properties, `allprop`,
`propname`, other collections — returns None and Radicale answers alone.

The same for the commonest REPORT, a `calendar-query` of VEVENTs in one
time range asking for `getetag` and the whole `calendar-data`: when the
indexes decide every match (`service.filtered_items` says so for each
item), the answer is the stored texts; a PROPFIND Depth 0 through Radicale
first decides the user's rights. A filter the indexes cannot decide, `expand`,
partial calendar-data or other properties go to Radicale.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]

from bridge.dav import service
from bridge.db.engine import Database

DAV = "{DAV:}"
CAL = "{urn:ietf:params:xml:ns:caldav}"
PROBE = b'<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/></prop></propfind>'
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


def _utc(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def week_query(body: bytes) -> tuple[list[str], dt.datetime | None, dt.datetime | None] | None:
    """(props, start, end) of a plain VEVENT time-range calendar-query, else None."""
    try:
        root = SafeET.fromstring(body)
    except Exception:  # malformed or hostile XML: Radicale answers (and refuses) it
        return None
    if root.tag != f"{CAL}calendar-query" or [c.tag for c in root] != [
            f"{DAV}prop", f"{CAL}filter"]:
        return None
    props = [c.tag for c in root[0]]
    data = root[0].find(f"{CAL}calendar-data")
    if set(props) != {f"{DAV}getetag", f"{CAL}calendar-data"} or len(props) != 2 or (
            data is None or len(data) or data.attrib):
        return None
    cal = root[1]
    if len(cal) != 1 or cal[0].tag != f"{CAL}comp-filter" or cal[0].get("name") != "VCALENDAR":
        return None
    events = cal[0]
    if len(events) != 1 or events[0].tag != f"{CAL}comp-filter" or (
            events[0].get("name") != "VEVENT"):
        return None
    ranges = list(events[0])
    if len(ranges) != 1 or ranges[0].tag != f"{CAL}time-range" or len(ranges[0]):
        return None
    try:
        start, end = _utc(ranges[0].get("start")), _utc(ranges[0].get("end"))
    except ValueError:
        return None
    if start is None and end is None:
        return None
    return props, start, end


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


def _report_item(prefix: str, item: service.ItemRow, props: list[str]) -> str:
    values = {
        f"{DAV}getetag": f'<getetag>"{item.etag}"</getetag>',
        f"{CAL}calendar-data": f"<C:calendar-data>{escape(item.text)}</C:calendar-data>",
    }
    inner = "".join(values[p] for p in props)
    return (f"<response><href>{prefix}{escape(quote(item.href))}</href><propstat><prop>"
            f"{inner}</prop><status>HTTP/1.1 200 OK</status></propstat></response>")


Response = tuple[int, list[tuple[str, str]], bytes]
Caller = Callable[[dict[str, Any]], Response]
T = TypeVar("T")


def _target(db: Database, environ: dict[str, Any], method: str,
            parse: Callable[[bytes], T | None]) -> tuple[T, service.Scope, str] | None:
    """What a Depth-1 `method` on a calendar asks for, if a fast path can answer it."""
    if environ.get("REQUEST_METHOD") != method or environ.get("HTTP_DEPTH") != "1":
        return None
    parsed = parse(environ["wsgi.input"].getvalue())
    path = str(environ.get("PATH_INFO", ""))
    if parsed is None or not path.endswith("/"):
        return None
    scope = _scope(db, path)
    return None if scope is None else (parsed, scope, path)


def _depth0(environ: dict[str, Any], call_radicale: Caller, method: str, body: bytes
            ) -> Response:
    """Radicale's own answer for the collection alone (it checks the user's rights)."""
    head = dict(environ, REQUEST_METHOD=method, HTTP_DEPTH="0", CONTENT_LENGTH=str(len(body)))
    head.pop("HTTP_ACCEPT_ENCODING", None)  # its answer must stay splice-able
    head["wsgi.input"] = io.BytesIO(body)
    return call_radicale(head)


def answer_query(db: Database, environ: dict[str, Any], call_radicale: Caller
                 ) -> Response | None:
    """A calendar-query REPORT answered from the indexes, or None."""
    target = _target(db, environ, "REPORT", week_query)
    if target is None:
        return None
    (props, start, end), scope, path = target
    with db.sync_session() as s:
        rows = service.filtered_items(s, scope, start, end)
    if not all(certain for _, certain in rows):
        return None  # an occurrence only the iCalendar text can decide
    status, headers, payload = _depth0(environ, call_radicale, "PROPFIND", PROBE)
    if status != 207:
        return status, headers, payload
    prefix = escape(quote(f"{environ.get('SCRIPT_NAME', '')}{path}"))
    out = ("<?xml version='1.0' encoding='utf-8'?>\n"
           '<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
           + "".join(_report_item(prefix, item, props) for item, _ in rows)
           + "</multistatus>")
    return 207, [("Content-Type", "text/xml; charset=utf-8")], out.encode("utf-8")


def answer(db: Database, environ: dict[str, Any], call_radicale: Caller) -> Response | None:
    """The whole PROPFIND answer, or None when Radicale must answer it."""
    target = _target(db, environ, "PROPFIND", wanted_props)
    if target is None:
        return None
    props, scope, path = target
    status, headers, payload = _depth0(environ, call_radicale, "PROPFIND",
                                       environ["wsgi.input"].getvalue())
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
