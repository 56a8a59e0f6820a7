"""CalDAV free-busy-query (RFC 4791 §7.10) on a staff member's own calendar,
answered from the same data as the availability API.

Radicale answers the REPORT first: it authenticates the client, checks the
rights and the request, and computes busy time from the calendar's items.
When it says 200 for a staff calendar, the body is replaced by
`bridge.availability.service.freebusy_vcalendar`, which also counts the
staff member's linked external calendars (an iCloud dentist appointment is
busy time to a colleague's scheduling client too). Everything else passes
through untouched.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import unquote

from defusedxml import ElementTree
from sqlalchemy.orm import Session

from bridge.availability.service import freebusy_vcalendar
from bridge.db import repo
from bridge.db.engine import Database
from bridge.errors import NotFound

CALDAV_NS = "{urn:ietf:params:xml:ns:caldav}"
_CALENDAR_PATH = re.compile(r"^/([^/]+)/calendar/?$")


def is_free_busy_query(method: str, body: bytes) -> bool:
    return method == "REPORT" and b"free-busy-query" in body


def _utc(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def time_range(body: bytes) -> tuple[dt.datetime, dt.datetime] | None:
    """The query's time range; None when it is not one we can read (then
    Radicale's own answer stands)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    if root.tag != f"{CALDAV_NS}free-busy-query":
        return None
    element = root.find(f"{CALDAV_NS}time-range")
    if element is None or not element.get("start") or not element.get("end"):
        return None
    try:
        return _utc(element.get("start", "")), _utc(element.get("end", ""))
    except ValueError:
        return None


async def merged_answer(db: Database, path: str, body: bytes) -> str | None:
    """The VFREEBUSY text for `path` (relative to /dav), or None to keep Radicale's."""
    match = _CALENDAR_PATH.match(path)
    window = time_range(body)
    if match is None or window is None:
        return None
    email = unquote(match.group(1))

    def unit(s: Session) -> str | None:
        try:
            staff = repo.get_staff_by_email(s, None, email)
        except NotFound:
            return None
        return freebusy_vcalendar(s, staff.id, *window)

    return await db.read(unit)
