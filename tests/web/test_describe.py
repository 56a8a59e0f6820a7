"""Change-log entries in words (pure): times, sources, unknown types."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bridge.web.describe import describe, move, span

NAMES = {"anna@acme.example.com": "Anna Müller"}
STAFF = {7: "Anna Müller"}


@dataclass
class Entry:
    type: str
    source: str = "caldav"
    actor: str = "anna@acme.example.com"
    data: dict[str, Any] = field(default_factory=dict)
    staff_id: int | None = 7
    entity: str = "appointment"
    entity_id: int = 1
    seq: int = 1
    created_at: dt.datetime = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)


def test_spans_and_moves() -> None:
    assert span("2026-11-24T14:00:00+01:00", "2026-11-24T15:00:00+01:00") == \
        "Tue 24 Nov, 14:00–15:00"
    assert span("2026-11-24", "2026-11-25") == "Tue 24 Nov (all day)"
    assert span("2026-11-24", "2026-11-27") == "Tue 24 Nov – Thu 26 Nov (all day)"
    assert span("2026-11-24T23:00:00+01:00", "2026-11-25T01:00:00+01:00") == \
        "Tue 24 Nov 23:00 – Wed 25 Nov 01:00"
    same_day = move({"start": "2026-11-24T14:00:00+01:00", "end": "2026-11-24T15:00:00+01:00"},
                    {"start": "2026-11-24T15:30:00+01:00", "end": "2026-11-24T16:30:00+01:00"})
    assert same_day == "Tue 24 Nov, 14:00 → 15:30"
    other_day = move({"start": "2026-11-24T14:00:00+01:00", "end": "2026-11-24T15:00:00+01:00"},
                     {"start": "2026-11-26T09:00:00+01:00", "end": "2026-11-26T10:00:00+01:00"})
    assert other_day == "Tue 24 Nov, 14:00–15:00 → Thu 26 Nov, 09:00–10:00"


def test_reschedule_by_staff_in_their_calendar() -> None:
    entry = Entry("appointment.rescheduled", data={
        "fields": ["end", "start"],
        "before": {"start": "2026-11-24T14:00:00+01:00", "end": "2026-11-24T15:00:00+01:00"},
        "after": {"start": "2026-11-24T15:30:00+01:00", "end": "2026-11-24T16:30:00+01:00"}})
    d = describe(entry, NAMES, STAFF, {1: {"service_name": "Follow-up",
                                           "customer_name": "Léa Martin"}})
    assert (d.who, d.source_label) == ("Anna Müller", "calendar")
    assert d.text == "moved Follow-up – Léa Martin in their calendar: Tue 24 Nov, 14:00 → 15:30"


def test_blocked_time_is_shown_in_the_local_zone() -> None:
    entry = Entry("blocked_time.created", entity="blocked_time", data={
        "summary": "Gym", "recurring": True,
        "busy": [{"start": "2026-11-24T11:00:00+00:00", "end": "2026-11-24T12:00:00+00:00"}]})
    d = describe(entry, NAMES, STAFF, timezone="Europe/Paris")
    assert d.text == "blocked time (Gym) in their calendar: Tue 24 Nov, 12:00–13:00, repeating"


def test_other_sources_and_types() -> None:
    api = describe(Entry("appointment.updated", source="api", actor="crm", data={
        "fields": ["notes", "location"], "before": {}, "after": {}}), NAMES, STAFF)
    assert api.who == "The booking system (crm)"
    assert api.text == "changed the notes, the location of an appointment through the booking system"
    sync = describe(Entry("calendar_link.failed", source="sync", actor="poller",
                          entity="calendar_link", data={"label": "iCloud", "error": "HTTP 401"}),
                    NAMES, STAFF)
    assert sync.who == "External calendar sync"
    assert sync.text == "saw the external calendar iCloud for Anna Müller stop working: HTTP 401"
    admin = describe(Entry("feed.rotated", source="admin", actor="boss@acme.example.com",
                           entity="feed"), NAMES, STAFF)
    assert admin.who == "boss@acme.example.com"
    assert admin.text == "rotated a feed link for Anna Müller (the old URL stopped working)"
    unknown = describe(Entry("gizmo.frobbed", source="api", actor=""), NAMES, STAFF)
    assert (unknown.who, unknown.text) == ("The booking system", "gizmo frobbed")
