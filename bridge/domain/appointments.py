"""Rules of an appointment: validation of input, timing, what counts as a change.

Pure: no SQL, no HTTP. Input arrives as plain mappings (decoded JSON, CLI
options, fields mapped from a CalDAV VEVENT) and leaves as `AppointmentFields`
or `Invalid` errors naming the offending field.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.errors import Invalid

STATUSES = ("confirmed", "tentative", "cancelled")
SOURCES = ("api", "caldav", "admin", "sync")

# Fields whose change raises SEQUENCE (RFC 5545 §3.8.7.4: a "significant"
# change): the time, the status, where, and what the SUMMARY shows.
MATERIAL_FIELDS = (
    "all_day", "start_at", "end_at", "start_date", "end_date", "timezone",
    "status", "location", "service_name", "customer_name", "staff_id",
)
TEXT_FIELDS: dict[str, int] = {
    "service_name": 200,
    "customer_name": 200,
    "customer_email": 254,
    "customer_phone": 64,
    "location": 500,
    "meeting_url": 1000,
    "notes": 10_000,
}
WRITABLE = {
    "external_id", "staff_id", "start", "end", "all_day", "timezone", "status", *TEXT_FIELDS,
}
# All-day events have no zone of their own; widen their UTC span so a
# time-range query in any zone (UTC-12 … UTC+14) still finds them.
ALL_DAY_SLACK = dt.timedelta(hours=14)
MAX_DURATION = dt.timedelta(days=366)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AppointmentLike(Protocol):
    """What rendering needs of an appointment (the ORM row satisfies it)."""

    uid: str
    all_day: bool
    start_at: dt.datetime | None
    end_at: dt.datetime | None
    start_date: dt.date | None
    end_date: dt.date | None
    timezone: str
    status: str
    service_name: str
    customer_name: str
    customer_email: str
    customer_phone: str
    location: str
    meeting_url: str
    notes: str
    sequence: int
    created_at: dt.datetime
    updated_at: dt.datetime


def check_timezone(name: Any, field: str = "timezone") -> str:
    if not isinstance(name, str) or not name:
        raise Invalid(f"{field} must be an IANA time zone name such as Europe/Paris", field=field)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r}", field=field) from None
    return name


def check_email(value: Any, field: str = "email", *, required: bool = True) -> str:
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.match(value):
        raise Invalid(f"{field} must be an email address", field=field)
    return value.strip().lower()


def check_text(value: Any, field: str, max_len: int, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", field=field)
    if len(value) > max_len:
        raise Invalid(f"{field} is longer than {max_len} characters", field=field)
    if required and not value.strip():
        raise Invalid(f"{field} is required", field=field)
    if "\x00" in value:
        raise Invalid(f"{field} contains a NUL character", field=field)
    return value


def check_slug(value: Any, field: str = "slug") -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", value):
        raise Invalid(
            f"{field} must be 1-64 lower-case letters, digits or dashes", field=field
        )
    return value


@dataclass(frozen=True)
class Timing:
    all_day: bool
    timezone: str
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None

    def span(self) -> tuple[dt.datetime, dt.datetime]:
        """The UTC interval used for time-range queries."""
        if self.all_day:
            assert self.start_date and self.end_date
            start = dt.datetime.combine(self.start_date, dt.time(), dt.UTC) - ALL_DAY_SLACK
            end = dt.datetime.combine(self.end_date, dt.time(), dt.UTC) + ALL_DAY_SLACK
            return start, end
        assert self.start_at and self.end_at
        return self.start_at, self.end_at

    def as_columns(self) -> dict[str, Any]:
        first, last = self.span()
        return {
            "all_day": self.all_day,
            "timezone": self.timezone,
            "start_at": self.start_at,
            "end_at": self.end_at,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "first_occurrence": first,
            "last_occurrence": last,
        }


def _parse_date(value: Any, field: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise Invalid(f"{field} must be a date (YYYY-MM-DD) for an all-day appointment", field=field)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise Invalid(f"{field} must be a date (YYYY-MM-DD) for an all-day appointment", field=field)


def _parse_datetime(value: Any, field: str, tz: ZoneInfo) -> dt.datetime:
    parsed: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and "T" in value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    if parsed is None:
        raise Invalid(
            f"{field} must be an ISO 8601 date-time such as 2026-05-04T09:30:00+02:00", field=field
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(dt.UTC)


def parse_timing(start: Any, end: Any, all_day: Any, timezone: str) -> Timing:
    """Validate start/end (date-times with offset, naive ones read in `timezone`,
    or dates with an exclusive end when `all_day`)."""
    if not isinstance(all_day, bool):
        raise Invalid("all_day must be true or false", field="all_day")
    if start is None:
        raise Invalid("start is required", field="start")
    if end is None:
        raise Invalid("end is required", field="end")
    tz = ZoneInfo(timezone)
    if all_day:
        sd, ed = _parse_date(start, "start"), _parse_date(end, "end")
        if ed <= sd:
            raise Invalid("end must be after start (the end date is exclusive)", field="end")
        if ed - sd > MAX_DURATION:
            raise Invalid("an appointment may last at most 366 days", field="end")
        return Timing(True, timezone, start_date=sd, end_date=ed)
    sa, ea = _parse_datetime(start, "start", tz), _parse_datetime(end, "end", tz)
    if ea <= sa:
        raise Invalid("end must be after start", field="end")
    if ea - sa > MAX_DURATION:
        raise Invalid("an appointment may last at most 366 days", field="end")
    return Timing(False, timezone, start_at=sa, end_at=ea)


def timing_of(appt: AppointmentLike) -> Timing:
    return Timing(
        appt.all_day, appt.timezone, appt.start_at, appt.end_at, appt.start_date, appt.end_date
    )


def iso_start_end(appt: AppointmentLike) -> tuple[str, str]:
    """Start/end as the API shows them: dates, or date-times in the appointment's zone."""
    if appt.all_day:
        assert appt.start_date and appt.end_date
        return appt.start_date.isoformat(), appt.end_date.isoformat()
    assert appt.start_at and appt.end_at
    tz = ZoneInfo(appt.timezone)
    return appt.start_at.astimezone(tz).isoformat(), appt.end_at.astimezone(tz).isoformat()


def validate_fields(
    payload: Mapping[str, Any], *, current: AppointmentLike | None, default_timezone: str
) -> tuple[dict[str, Any], Timing | None]:
    """Check a create (current None: full) or update (partial) payload.

    Returns the plain column values to set and, when the timing is given or
    changed, the new `Timing`. Raises `Invalid` naming the first bad field.
    """
    unknown = sorted(set(payload) - WRITABLE)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0])
    values: dict[str, Any] = {}
    for name, max_len in TEXT_FIELDS.items():
        if name in payload:
            values[name] = check_text(payload[name], name, max_len)
    if values.get("customer_email"):
        values["customer_email"] = check_email(values["customer_email"], "customer_email")
    if values.get("meeting_url") and not re.match(r"^https?://\S+$", values["meeting_url"]):
        raise Invalid("meeting_url must be an http(s) URL", field="meeting_url")
    if "status" in payload:
        if payload["status"] not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}", field="status")
        values["status"] = payload["status"]
    if "external_id" in payload:
        ext = payload["external_id"]
        if ext is not None and (not isinstance(ext, str) or not ext or len(ext) > 200):
            raise Invalid("external_id must be a non-empty string of at most 200 characters",
                          field="external_id")
        values["external_id"] = ext
    if "staff_id" in payload:
        if not isinstance(payload["staff_id"], int) or isinstance(payload["staff_id"], bool):
            raise Invalid("staff_id must be an integer", field="staff_id")
        values["staff_id"] = payload["staff_id"]
    elif current is None:
        raise Invalid("staff_id is required", field="staff_id")

    timing: Timing | None = None
    timing_keys = {"start", "end", "all_day", "timezone"} & set(payload)
    if current is None or timing_keys:
        tz = payload.get("timezone", current.timezone if current else default_timezone)
        tz = check_timezone(tz)
        all_day = payload.get("all_day", current.all_day if current else False)
        if current is not None and ("start" not in payload or "end" not in payload):
            cur_start, cur_end = (
                (current.start_date, current.end_date)
                if current.all_day
                else (current.start_at, current.end_at)
            )
            if all_day != current.all_day:
                raise Invalid("changing all_day needs both start and end", field="all_day")
            start = payload.get("start", cur_start)
            end = payload.get("end", cur_end)
        else:
            start, end = payload.get("start"), payload.get("end")
        timing = parse_timing(start, end, all_day, tz)
    return values, timing


def material_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    return any(before.get(k) != after.get(k) for k in MATERIAL_FIELDS if k in after)


def summary_for(appt: AppointmentLike) -> str:
    """The SUMMARY staff see for their own appointment."""
    parts = [p for p in (appt.service_name, appt.customer_name) if p]
    return " – ".join(parts) if parts else "Appointment"


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def snapshot(appt: Any) -> dict[str, Any]:
    """The appointment as the API and the change log show it (JSON-able)."""
    start, end = iso_start_end(appt)
    return {
        "id": appt.id,
        "uid": appt.uid,
        "external_id": appt.external_id,
        "staff_id": appt.staff_id,
        "start": start,
        "end": end,
        "all_day": appt.all_day,
        "timezone": appt.timezone,
        "status": appt.status,
        "service_name": appt.service_name,
        "customer_name": appt.customer_name,
        "customer_email": appt.customer_email,
        "customer_phone": appt.customer_phone,
        "location": appt.location,
        "meeting_url": appt.meeting_url,
        "notes": appt.notes,
        "sequence": appt.sequence,
        "version": appt.version,
        "etag": appt.etag,
        "last_changed_by": {"source": appt.last_source, "actor": appt.last_actor},
        "created_at": _iso(appt.created_at),
        "updated_at": _iso(appt.updated_at),
    }


def classify_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The change-log type for an update, and which API fields changed."""
    changed = sorted(k for k in after if k not in _NOT_CONTENT and before.get(k) != after.get(k))
    if after.get("status") == "cancelled" and before.get("status") != "cancelled":
        return "appointment.cancelled", changed
    if {"start", "end", "all_day", "timezone"} & set(changed):
        return "appointment.rescheduled", changed
    return "appointment.updated", changed


_NOT_CONTENT = {"sequence", "version", "etag", "updated_at", "created_at", "last_changed_by"}
