"""Change-log entries in human words, for the console's "Recent changes".

`describe(entry, names)` turns one `ChangeEntry` into a sentence such as
"Anna Müller moved Follow-up – Léa Martin in their calendar: Tue 24 Nov,
14:00 → 15:30". Times are shown as the change log stores them (in the
appointment's own zone, `bridge.domain.appointments.snapshot`). Entry types
this module does not know still get a plain sentence from their type, so a
feature adding a new type never breaks the page. Pure: no SQL, no aiohttp.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

SOURCE_LABELS = {
    "caldav": "calendar",
    "api": "booking system",
    "admin": "admin",
    "sync": "external calendar",
}
_WHERE = {
    "caldav": "in their calendar",
    "api": "through the booking system",
    "admin": "in the admin console",
    "sync": "from an external calendar",
}
_FIELD_WORDS = {
    "notes": "the notes",
    "location": "the location",
    "service_name": "the service",
    "customer_name": "the customer",
    "customer_email": "the customer's email",
    "customer_phone": "the customer's phone",
    "meeting_url": "the meeting link",
    "status": "the status",
    "staff_id": "the staff member",
    "external_id": "the booking reference",
}
_SIMPLE = {
    "staff.created": "added staff member {subject}",
    "staff.updated": "updated staff member {subject}",
    "staff.deleted": "removed staff member {subject}",
    "group.created": "created group {group}",
    "group.updated": "updated group {group}",
    "group.deleted": "deleted group {group}",
    "group.member_added": "added {subject} to a group",
    "group.member_removed": "removed {subject} from a group",
    "feed.created": "created a {privacy} feed link{for_subject}",
    "feed.rotated": "rotated a feed link{for_subject} (the old URL stopped working)",
    "feed.revoked": "revoked a feed link{for_subject}",
    "app_password.created": "created an app password{for_subject}",
    "app_password.revoked": "revoked an app password{for_subject}",
    "admin.created": "added admin {email}",
    "api_key.created": "created an API key",
    "company.created": "created the company",
    "invitation.sent": "sent an invitation to {subject}",
    "calendar_link.created": "linked an external calendar ({label}){for_subject}",
    "calendar_link.updated": "changed the external calendar {label}{for_subject}",
    "calendar_link.deleted": "unlinked the external calendar {label}{for_subject}",
    "calendar_link.failed": "saw the external calendar {label}{for_subject} stop working: {error}",
    "calendar_link.recovered": "saw the external calendar {label}{for_subject} work again",
    "webhook_endpoint.created": "added a webhook endpoint",
    "webhook_endpoint.updated": "changed a webhook endpoint",
    "webhook_endpoint.deleted": "removed a webhook endpoint",
    "webhook_endpoint.secret_rotated": "rotated a webhook signing secret",
    "webhook_endpoint.disabled": "disabled a webhook endpoint after repeated failures",
    "company.updated": "changed the company settings",
}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class Described:
    seq: int
    at: dt.datetime
    who: str
    source: str
    source_label: str
    staff: str
    text: str
    type: str


def _when(value: Any) -> dt.datetime | dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        if "T" in value:
            return dt.datetime.fromisoformat(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _day(d: dt.date) -> str:
    return d.strftime("%a %-d %b")


def span(start: Any, end: Any) -> str:
    """"Tue 24 Nov, 14:00–15:00", or "Tue 24 Nov (all day)"."""
    s, e = _when(start), _when(end)
    if isinstance(s, dt.datetime) and isinstance(e, dt.datetime):
        if s.date() == e.date():
            return f"{_day(s)}, {s:%H:%M}–{e:%H:%M}"
        return f"{_day(s)} {s:%H:%M} – {_day(e)} {e:%H:%M}"
    if isinstance(s, dt.date) and isinstance(e, dt.date):
        last = e - dt.timedelta(days=1)
        return f"{_day(s)} (all day)" if last <= s else f"{_day(s)} – {_day(last)} (all day)"
    return ""


def move(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """"Tue 24 Nov, 14:00 → 15:30" (same day), or both spans in full."""
    bs, be = _when(before.get("start")), _when(before.get("end"))
    as_, ae = _when(after.get("start")), _when(after.get("end"))
    if (isinstance(bs, dt.datetime) and isinstance(as_, dt.datetime)
            and isinstance(be, dt.datetime) and isinstance(ae, dt.datetime)
            and bs.date() == as_.date() == be.date() == ae.date()):
        return f"{_day(bs)}, {bs:%H:%M} → {as_:%H:%M}"
    return f"{span(before.get('start'), before.get('end'))} → " \
           f"{span(after.get('start'), after.get('end'))}"


def _title(data: Mapping[str, Any]) -> str:
    parts = [str(data.get(k) or "") for k in ("service_name", "customer_name")]
    title = " – ".join(p for p in parts if p)
    return title or "an appointment"


def who_of(source: str, actor: str, names: Mapping[str, str]) -> str:
    """The person or system behind a change, by name where we know it."""
    if actor and actor.lower() in names:
        return names[actor.lower()]
    if source == "api":
        return "The booking system" + ("" if actor in ("", "api", "api-key") else f" ({actor})")
    if source == "sync":
        return "External calendar sync"
    if source == "admin":
        return actor if actor and actor not in ("cli", "demo") else "An admin"
    return actor or "Someone"


def _local_iso(value: Any, timezone: str) -> Any:
    when = _when(value)
    if isinstance(when, dt.datetime) and when.tzinfo is not None:
        return when.astimezone(ZoneInfo(timezone)).isoformat()
    return value


def describe(entry: Any, names: Mapping[str, str], staff_names: Mapping[int, str],
             appointments: Mapping[int, Mapping[str, Any]] | None = None,
             timezone: str = "UTC") -> Described:
    """One change-log row (`ChangeEntry`-like) in words. `names` maps lower-case
    emails to names (CalDAV actors are emails); `staff_names` maps ids to names;
    `appointments` maps appointment ids to their current `service_name`,
    `customer_name`, `start` and `end`, for entries that logged only what changed;
    blocked time (logged in UTC) is shown in `timezone`."""
    data: Mapping[str, Any] = entry.data or {}
    current: Mapping[str, Any] = (appointments or {}).get(entry.entity_id, {}) \
        if entry.entity == "appointment" else {}
    who = who_of(entry.source, entry.actor, names)
    where = _WHERE.get(entry.source, "")
    subject = staff_names.get(entry.staff_id, "") if entry.staff_id is not None else ""
    kind = entry.type
    if kind.startswith("appointment."):
        after = data.get("after") or {}
        before = data.get("before") or {}
        title = _title({**current, **before, **after})
        if kind == "appointment.rescheduled":
            text = f"moved {title} {where}: {move(before, after)}"
        elif kind == "appointment.cancelled":
            text = f"cancelled {title} {where}"
            when = span(after.get("start") or current.get("start"),
                        after.get("end") or current.get("end"))
            if when:
                text += f" ({when})"
        elif kind == "appointment.created":
            text = f"booked {title} {where}: {span(after.get('start'), after.get('end'))}"
        elif kind == "appointment.removed_from_calendar":
            text = f"removed the cancelled {title} {where}"
        elif kind == "appointment.updated":
            fields = [_FIELD_WORDS.get(f, f.replace("_", " ")) for f in data.get("fields", [])]
            changed = ", ".join(fields) or "details"
            text = f"changed {changed} of {title} {where}"
        else:
            text = f"{kind.split('.', 1)[1].replace('_', ' ')} {title} {where}"
    elif kind.startswith("blocked_time."):
        summary = data.get("summary") or (data.get("after") or {}).get("summary") or "busy time"
        verb = {"created": "blocked time", "updated": "changed blocked time",
                "deleted": "removed blocked time"}.get(kind.split(".", 1)[1], "changed blocked time")
        text = f"{verb} ({summary}) {where}"
        busy = data.get("busy") or []
        if busy and isinstance(busy[0], Mapping):
            when = span(_local_iso(busy[0].get("start"), timezone),
                        _local_iso(busy[0].get("end"), timezone))
            if when:
                text += f": {when}" + (", repeating" if data.get("recurring") else "")
    elif kind in _SIMPLE:
        snap = data.get("after") or data.get("before") or {}
        text = _SIMPLE[kind].format_map(_Blank(
            subject=subject or snap.get("name") or "a staff member",
            group=data.get("name") or data.get("slug") or "",
            privacy=data.get("privacy", ""),
            for_subject=f" for {subject}" if subject else "",
            email=data.get("email", ""),
            label=data.get("label") or data.get("url") or "",
            error=data.get("error") or "",
        ))
    else:
        text = kind.replace(".", " ").replace("_", " ")
    return Described(
        seq=entry.seq, at=entry.created_at, who=who, source=entry.source,
        source_label=SOURCE_LABELS.get(entry.source, entry.source), staff=subject,
        text=" ".join(text.split()), type=kind,
    )
