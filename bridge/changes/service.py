"""The change feed: reading a company's change log after a cursor.

What belongs here: cursors (opaque, bound to one company by an HMAC, so a
cursor of another company or a made-up one is refused), the catalogue of
event types a booking system can act on, reading entries oldest first,
retention (purge, and 410 for a cursor older than it), and waiting for the
next entry (long poll) — by looking at the database, which every worker
shares; an in-process signal only shortens the wait.

Why no entry is ever skipped: `repo.log_change` bumps `Company.change_seq`
with UPDATE … RETURNING in the writing transaction, so a second writer of
the same company waits on the row lock until the first has committed (or
rolled back, which returns the number). Sequence numbers per company are
therefore gap-free and commit in order: every snapshot a reader takes sees
a prefix 1..n of them, never n+1 without n. (SQLite serialises all writers.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, event, select
from sqlalchemy.orm import Session

from bridge.db.engine import Database
from bridge.db.models import ChangeEntry, Company, WebhookDelivery, utcnow
from bridge.errors import Gone, Invalid, SyncTokenInvalid

# Every type the change log carries, with what a receiver finds in `data`.
EVENT_TYPES: dict[str, str] = {
    "appointment.created": "A booking was made; data.after is the appointment.",
    "appointment.rescheduled": "Start or end moved; data.before/after hold old and new "
                               "start/end and every other changed field, data.fields lists them.",
    "appointment.cancelled": "The booking was cancelled (in the API or by deleting it in a "
                             "calendar); data.before/after show the status and changed fields.",
    "appointment.updated": "Other fields changed; data.fields lists them, data.before/after "
                           "their values.",
    "appointment.calendar_data_changed": "Only calendar-side data changed (an alarm, a colour); "
                                         "the booking is the same.",
    "appointment.removed_from_calendar": "Staff deleted a cancelled appointment from their "
                                         "calendar (the booking is unchanged).",
    "blocked_time.created": "A staff member blocked time in their calendar; data has its busy "
                            "intervals.",
    "blocked_time.updated": "Blocked time changed; data has its busy intervals.",
    "blocked_time.deleted": "Blocked time was removed.",
    "staff.created": "A staff member was added; data.after.",
    "staff.updated": "A staff member changed; data.changes.",
    "staff.deleted": "A staff member was removed; data.before.",
    "group.created": "A group was created.",
    "group.updated": "A group changed; data.changes.",
    "group.deleted": "A group was deleted.",
    "group.member_added": "A staff member joined a group; data.staff_id.",
    "group.member_removed": "A staff member left a group; data.staff_id.",
    "feed.created": "A feed link was created.",
    "feed.rotated": "A feed link got a new URL; the old one stopped working.",
    "feed.revoked": "A feed link was revoked.",
    "calendar_link.created": "An external calendar was linked.",
    "calendar_link.updated": "An external calendar link changed.",
    "calendar_link.deleted": "An external calendar link was removed.",
    "calendar_link.failed": "An external calendar could not be read; its busy times are stale.",
    "calendar_link.recovered": "An external calendar can be read again.",
    "app_password.created": "A CalDAV app password was issued to a staff member.",
    "app_password.revoked": "A CalDAV app password was revoked.",
    "invitation.sent": "A staff member was invited by email.",
    "admin.created": "An admin account was created.",
    "company.created": "The company was created.",
    "company.updated": "Company settings changed.",
    "api_key.created": "An API key was issued.",
    "webhook_endpoint.created": "A webhook endpoint was added.",
    "webhook_endpoint.updated": "A webhook endpoint changed (URL, filter, enabled).",
    "webhook_endpoint.deleted": "A webhook endpoint was deleted.",
    "webhook_endpoint.secret_rotated": "A webhook endpoint got a new signing secret.",
    "webhook_endpoint.disabled": "Deliveries failed for too long; the endpoint was disabled. "
                                 "data.reason says why; re-enable it to resume where it stopped.",
}


def check_event_types(value: Any, field: str = "event_types") -> list[str]:
    """A webhook filter: exact types, `entity.*` or `*`; unknown ones are refused."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{field} must be a non-empty list of event types (or [\"*\"])", field=field)
    entities = {t.split(".", 1)[0] for t in EVENT_TYPES}
    out: list[str] = []
    for item in value:
        if item == "*" or item in EVENT_TYPES:
            out.append(item)
        elif item.endswith(".*") and item[:-2] in entities:
            out.append(item)
        else:
            raise Invalid(f"unknown event type {item!r}; see GET /api/v1/changes/event-types",
                          field=field)
    return list(dict.fromkeys(out))


def matches(filters: list[str], event_type: str) -> bool:
    return any(f == "*" or f == event_type
               or (f.endswith(".*") and event_type.startswith(f[:-1])) for f in filters)


# --- cursors ------------------------------------------------------------------

def _mac(secret: bytes, company_id: int, seq: int) -> str:
    return hmac.digest(secret, f"changes:{company_id}:{seq}".encode(), "sha256").hex()[:16]


def encode_cursor(secret: bytes, company_id: int, seq: int) -> str:
    return f"{seq}.{_mac(secret, company_id, seq)}"


def decode_cursor(secret: bytes, company_id: int, cursor: str) -> int:
    """The sequence number in a cursor this company was given, else 400."""
    seq_text, dot, mac = cursor.partition(".")
    if not dot or not seq_text.isdigit() or len(seq_text) > 18 or not hmac.compare_digest(
            mac, _mac(secret, company_id, int(seq_text))):
        raise SyncTokenInvalid("after is not a cursor this API gave your company; use the "
                               "next_cursor of a previous answer, or omit it to start over",
                               field="after")
    return int(seq_text)


# --- reading ------------------------------------------------------------------

# Read as plain rows (no ORM objects): the feed is read far more than written.
ENTRY_COLUMNS = (ChangeEntry.company_id, ChangeEntry.seq, ChangeEntry.type, ChangeEntry.entity,
                 ChangeEntry.entity_id, ChangeEntry.staff_id, ChangeEntry.source,
                 ChangeEntry.actor, ChangeEntry.created_at, ChangeEntry.data)


def entry_json(e: Any, secret: bytes) -> dict[str, Any]:
    """One entry as the feed and webhooks show it (`e`: a ChangeEntry or a
    row of ENTRY_COLUMNS)."""
    return {
        "cursor": encode_cursor(secret, e.company_id, e.seq),
        "seq": e.seq,
        "type": e.type,
        "entity": e.entity,
        "entity_id": e.entity_id,
        "staff_id": e.staff_id,
        "source": e.source,
        "actor": e.actor,
        "occurred_at": e.created_at.isoformat(),
        "data": e.data,
    }


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    last_seq: int  # the cursor position after this page
    head: int  # the company's newest sequence number


def read_changes(s: Session, company_id: int, after: int | None, limit: int,
                 secret: bytes) -> Page:
    """Entries after `after` (None: from the oldest kept), oldest first.

    A cursor older than retention (entries after it were purged) is `Gone`.
    """
    head = s.execute(select(Company.change_seq).where(Company.id == company_id)).scalar_one()
    if after is not None and after > head:
        raise SyncTokenInvalid("after is ahead of this company's change log; was the "
                               "database restored? Start over without a cursor",
                               field="after")
    rows = s.execute(
        select(*ENTRY_COLUMNS)
        .where(ChangeEntry.company_id == company_id, ChangeEntry.seq > (after or 0))
        .order_by(ChangeEntry.seq).limit(limit)
    ).all()
    # Sequence numbers have no gaps (see the module docstring) until retention
    # purges the oldest: a gap right after the cursor means entries are gone.
    if after is not None and (rows[0].seq != after + 1 if rows else after < head):
        raise Gone("entries after this cursor were purged (older than the retention "
                   "period); resynchronise from the API and restart the feed without a cursor",
                   field="after")
    entries = [entry_json(e, secret) for e in rows]
    last = rows[-1].seq if rows else (after if after is not None else head)
    return Page(entries, last, head)


def head_seq(s: Session, company_id: int) -> int:
    return s.execute(select(Company.change_seq).where(Company.id == company_id)).scalar_one()


def purge(s: Session, retention_days: int, now: dt.datetime | None = None) -> dict[str, int]:
    """Drop change-log entries and finished deliveries older than retention."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    changes = s.execute(delete(ChangeEntry).where(ChangeEntry.created_at < cutoff))
    deliveries = s.execute(delete(WebhookDelivery).where(
        WebhookDelivery.status == "succeeded", WebhookDelivery.created_at < cutoff))
    return {"changes": _count(changes), "deliveries": _count(deliveries)}


def _count(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


# --- waiting for the next entry ---------------------------------------------

class ChangeSignal:
    """Wakes waiters in this process when a transaction that logged a change
    commits (from any thread). Only a shortcut: waiters also poll the
    database, which is what tells them about other processes' writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def notify(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, set()
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(_resolve, fut)

    async def wait(self, seconds: float) -> None:
        """Return at the next notify or after `seconds`."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        item = (loop, fut)
        with self._lock:
            self._waiters.add(item)
        try:
            await asyncio.wait({fut}, timeout=max(seconds, 0))
        finally:
            with self._lock:
                self._waiters.discard(item)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


SIGNAL = ChangeSignal()


NOTIFY_CHANNEL = "calbridge_changes"


@event.listens_for(Session, "after_flush")
def _mark_changes(session: Session, _ctx: Any) -> None:
    if "calbridge_changed" in session.info or not any(
            isinstance(obj, ChangeEntry) for obj in session.new):
        return
    session.info["calbridge_changed"] = True
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # Delivered to every LISTENing process when (and only if) this commits.
        conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")


@event.listens_for(Session, "after_commit")
def _signal_changes(session: Session) -> None:
    if session.info.pop("calbridge_changed", False):
        SIGNAL.notify()


@event.listens_for(Session, "after_rollback")
def _forget_changes(session: Session) -> None:
    session.info.pop("calbridge_changed", None)


async def wait_for_changes(db: Database, company_id: int, after: int, seconds: float,
                           poll_seconds: float,
                           give_up: Callable[[], bool] = lambda: False) -> bool:
    """Wait until the company's log has an entry after `after`, at most
    `seconds` (or until `give_up()`); True if one arrived."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        if await db.read(head_seq, company_id) > after:
            return True
        left = deadline - loop.time()
        if left <= 0 or give_up():
            return False
        await SIGNAL.wait(min(poll_seconds, left))
