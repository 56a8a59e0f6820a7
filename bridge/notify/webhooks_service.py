"""Webhook units of work: endpoints, the delivery queue and its log.

Plain functions on a sync `Session` inside the caller's transaction, used
by the API, the CLI and the delivery worker alike (no aiohttp here).

The queue is built from the change log (DESIGN rule 2), never from process
memory: each endpoint remembers how far it has turned the log into
`WebhookDelivery` rows (`enqueued_seq`), and a worker that claims it (a
lease on the row, taken under `FOR UPDATE SKIP LOCKED` on PostgreSQL and
`BEGIN IMMEDIATE` on SQLite) sends its oldest pending delivery, records the
attempt, and only then moves on: at-least-once, in order per endpoint. A
crash leaves the lease to expire and another worker resumes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from bridge.changes.service import check_event_types, entry_json, matches
from bridge.config import WebhookSettings
from bridge.db import repo
from bridge.db.models import (
    ChangeEntry,
    Company,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from bridge.domain import appointments as rules
from bridge.domain.secrets import random_token
from bridge.errors import Conflict, Invalid, NotFound, PreconditionFailed
from bridge.notify.webhooks import IPNetwork, format_secret, validate_url

ENDPOINT_FIELDS = {"url", "event_types", "description", "enabled"}
WORKER = repo.Actor("admin", "webhook-worker")
ENQUEUE_BATCH = 1000
MAX_REPLAY = 10_000
MAX_ENDPOINTS = 50  # per company: each one is a queue the workers serve


# --- secrets ------------------------------------------------------------------

def _key(server_secret: bytes, endpoint_id: int, salt: str) -> bytes:
    return hmac.new(server_secret, f"webhook:{endpoint_id}:{salt}".encode(),
                    hashlib.sha256).digest()


def endpoint_secret(server_secret: bytes, ep: WebhookEndpoint) -> str:
    """The endpoint's `whsec_` secret (derived, never stored)."""
    return format_secret(_key(server_secret, ep.id, ep.secret_salt))


def signing_keys(server_secret: bytes, ep: WebhookEndpoint,
                 now: dt.datetime | None = None) -> list[bytes]:
    """The current key, and the previous one while its grace period lasts."""
    keys = [_key(server_secret, ep.id, ep.secret_salt)]
    if (ep.previous_secret_salt and ep.previous_secret_until is not None
            and ep.previous_secret_until > (now or utcnow())):
        keys.append(_key(server_secret, ep.id, ep.previous_secret_salt))
    return keys


# --- endpoints ----------------------------------------------------------------

def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def endpoint_json(ep: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": ep.id, "url": ep.url, "description": ep.description,
        "event_types": list(ep.event_types), "enabled": ep.enabled,
        "disabled_reason": ep.disabled_reason or None, "disabled_at": _iso(ep.disabled_at),
        "failing_since": _iso(ep.failing_since), "next_attempt_at": _iso(ep.next_attempt_at),
        "version": ep.version, "created_at": _iso(ep.created_at), "updated_at": _iso(ep.updated_at),
    }


def _public(ep: WebhookEndpoint) -> dict[str, Any]:
    """What the change log says about an endpoint (never its secret)."""
    return {"url": ep.url, "event_types": list(ep.event_types), "enabled": ep.enabled}


def _check_payload(payload: Mapping[str, Any], allow: Sequence[IPNetwork]) -> dict[str, Any]:
    unknown = sorted(set(payload) - ENDPOINT_FIELDS)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0])
    out: dict[str, Any] = {}
    if "url" in payload:
        out["url"] = validate_url(payload["url"], allow)
    if "event_types" in payload:
        out["event_types"] = check_event_types(payload["event_types"])
    if "description" in payload:
        out["description"] = rules.check_text(payload["description"], "description", 200)
    if "enabled" in payload:
        if not isinstance(payload["enabled"], bool):
            raise Invalid("enabled must be true or false", field="enabled")
        out["enabled"] = payload["enabled"]
    return out


def create_endpoint(s: Session, company_id: int, payload: Mapping[str, Any], actor: repo.Actor,
                    allow: Sequence[IPNetwork]) -> WebhookEndpoint:
    """A new endpoint; it receives the changes logged from now on."""
    if "url" not in payload:
        raise Invalid("url is required", field="url")
    values = _check_payload(payload, allow)
    count = s.execute(select(func.count()).select_from(WebhookEndpoint)
                      .where(WebhookEndpoint.company_id == company_id)).scalar_one()
    if count >= MAX_ENDPOINTS:
        raise Conflict(f"a company has at most {MAX_ENDPOINTS} webhook endpoints; "
                       "delete one first", field="url")
    now = utcnow()
    ep = WebhookEndpoint(
        company_id=company_id, url=values["url"], description=values.get("description", ""),
        event_types=values.get("event_types", ["*"]), enabled=values.get("enabled", True),
        secret_salt=random_token(16), enqueued_seq=0, version=1, created_at=now, updated_at=now,
    )
    s.add(ep)
    s.flush()
    entry = repo.log_change(s, company_id, "webhook_endpoint.created", "webhook_endpoint", ep.id,
                            actor, {"after": _public(ep)})
    ep.enqueued_seq = entry.seq
    return ep


def list_endpoints(s: Session, company_id: int) -> Sequence[WebhookEndpoint]:
    return s.execute(select(WebhookEndpoint).where(WebhookEndpoint.company_id == company_id)
                     .order_by(WebhookEndpoint.id)).scalars().all()


def get_endpoint(s: Session, company_id: int, endpoint_id: int) -> WebhookEndpoint:
    ep = s.get(WebhookEndpoint, endpoint_id)
    if ep is None or ep.company_id != company_id:
        raise NotFound(f"no webhook endpoint {endpoint_id}", field="webhook_id")
    return ep


def _check_version(ep: WebhookEndpoint, if_match: int | None) -> None:
    if if_match is not None and if_match != ep.version:
        raise PreconditionFailed("the endpoint changed since you read it (If-Match does not match)")


def update_endpoint(s: Session, company_id: int, endpoint_id: int, payload: Mapping[str, Any],
                    actor: repo.Actor, allow: Sequence[IPNetwork],
                    if_match: int | None = None) -> WebhookEndpoint:
    """Change URL, filter, description or enabled. Enabling a disabled
    endpoint resumes delivery where it stopped, at once."""
    ep = get_endpoint(s, company_id, endpoint_id)
    _check_version(ep, if_match)
    values = _check_payload(payload, allow)
    diff = {k: {"before": getattr(ep, k), "after": v} for k, v in values.items()
            if getattr(ep, k) != v}
    if not diff:
        return ep
    for k, v in values.items():
        setattr(ep, k, v)
    if diff.get("enabled", {}).get("after") is True:
        ep.failing_since = ep.next_attempt_at = ep.disabled_at = None
        ep.disabled_reason = ""
    elif diff.get("enabled", {}).get("after") is False:
        ep.disabled_at, ep.disabled_reason = utcnow(), f"disabled by {actor.source}"
    ep.version += 1
    ep.updated_at = utcnow()
    repo.log_change(s, company_id, "webhook_endpoint.updated", "webhook_endpoint", ep.id, actor,
                    {"changes": diff})
    return ep


def delete_endpoint(s: Session, company_id: int, endpoint_id: int, actor: repo.Actor,
                    if_match: int | None = None) -> None:
    ep = get_endpoint(s, company_id, endpoint_id)
    _check_version(ep, if_match)
    repo.log_change(s, company_id, "webhook_endpoint.deleted", "webhook_endpoint", ep.id, actor,
                    {"before": _public(ep)})
    s.delete(ep)


def rotate_secret(s: Session, company_id: int, endpoint_id: int, actor: repo.Actor,
                  grace_seconds: int) -> WebhookEndpoint:
    """A new secret; the old one keeps signing (next to it) for the grace period."""
    ep = get_endpoint(s, company_id, endpoint_id)
    now = utcnow()
    ep.previous_secret_salt = ep.secret_salt
    ep.previous_secret_until = now + dt.timedelta(seconds=grace_seconds)
    ep.secret_salt = random_token(16)
    ep.version += 1
    ep.updated_at = now
    repo.log_change(s, company_id, "webhook_endpoint.secret_rotated", "webhook_endpoint", ep.id,
                    actor, {"old_secret_valid_until": ep.previous_secret_until.isoformat()})
    return ep


# --- the queue ----------------------------------------------------------------

def _body(event_type: str, timestamp: dt.datetime, data: dict[str, Any]) -> str:
    # The Standard Webhooks payload shape: type, timestamp, data.
    return json.dumps({"type": event_type, "timestamp": timestamp.isoformat(), "data": data},
                      separators=(",", ":"))


def message_id(company_id: int, seq: int) -> str:
    """The `webhook-id` of a change: the same for every retry (and replay),
    so a receiver can drop duplicates."""
    return f"evt_{company_id}_{seq}"


def _delivery_for(ep: WebhookEndpoint, e: ChangeEntry, secret: bytes, kind: str,
                  now: dt.datetime) -> WebhookDelivery:
    data = entry_json(e, secret)
    data["company_id"] = e.company_id
    return WebhookDelivery(
        endpoint_id=ep.id, company_id=ep.company_id, message_id=message_id(e.company_id, e.seq),
        event_type=e.type, seq=e.seq, kind=kind, payload=_body(e.type, e.created_at, data),
        status="pending", attempts=0, created_at=now,
    )


def enqueue(s: Session, ep: WebhookEndpoint, secret: bytes) -> int:
    """Turn the change log after `enqueued_seq` into deliveries (filtered);
    the number queued. Seq order is commit order, so nothing is passed over."""
    rows = s.execute(
        select(ChangeEntry)
        .where(ChangeEntry.company_id == ep.company_id, ChangeEntry.seq > ep.enqueued_seq)
        .order_by(ChangeEntry.seq).limit(ENQUEUE_BATCH)
    ).scalars().all()
    now = utcnow()
    queued = 0
    for e in rows:
        if matches(ep.event_types, e.type):
            s.add(_delivery_for(ep, e, secret, "event", now))
            queued += 1
    if rows:
        ep.enqueued_seq = rows[-1].seq
        s.flush()
    return queued


def queue_test(s: Session, company_id: int, endpoint_id: int) -> WebhookDelivery:
    """A `webhook.test` message, queued behind what is pending."""
    ep = get_endpoint(s, company_id, endpoint_id)
    if not ep.enabled:
        raise Conflict("the endpoint is disabled; enable it before sending a test",
                       field="webhook_id")
    now = utcnow()
    d = WebhookDelivery(endpoint_id=ep.id, company_id=company_id,
                        message_id=f"test_{random_token(12)}", event_type="webhook.test",
                        seq=None, kind="test", status="pending", attempts=0, created_at=now,
                        payload=_body("webhook.test", now, {"endpoint_id": ep.id,
                                                            "message": "calbridge test event"}))
    s.add(d)
    s.flush()
    return d


def replay(s: Session, company_id: int, endpoint_id: int, from_seq: Any, to_seq: Any,
           secret: bytes) -> int:
    """Queue again the endpoint's events with from_seq <= seq <= to_seq
    (the filter applies); the number queued."""
    ep = get_endpoint(s, company_id, endpoint_id)
    for name, value in (("from_seq", from_seq), ("to_seq", to_seq)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise Invalid(f"{name} must be a positive integer (a change's seq)", field=name)
    if to_seq < from_seq:
        raise Invalid("to_seq must not be below from_seq", field="to_seq")
    if to_seq - from_seq >= MAX_REPLAY:
        raise Invalid(f"replay at most {MAX_REPLAY} changes at once", field="to_seq")
    head = s.execute(select(Company.change_seq).where(Company.id == company_id)).scalar_one()
    if to_seq > head:
        raise Invalid(f"to_seq is past the newest change ({head})", field="to_seq")
    rows = s.execute(
        select(ChangeEntry).where(ChangeEntry.company_id == company_id,
                                  ChangeEntry.seq.between(from_seq, to_seq))
        .order_by(ChangeEntry.seq)
    ).scalars().all()
    now = utcnow()
    queued = 0
    for e in rows:
        if matches(ep.event_types, e.type) and e.seq <= ep.enqueued_seq:
            s.add(_delivery_for(ep, e, secret, "replay", now))
            queued += 1
    s.flush()
    return queued


# --- the delivery log ---------------------------------------------------------

def delivery_json(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id, "message_id": d.message_id, "event_type": d.event_type, "seq": d.seq,
        "kind": d.kind, "status": d.status, "attempts": d.attempts,
        "last_status_code": d.last_status_code, "last_error": d.last_error or None,
        "created_at": _iso(d.created_at), "last_attempt_at": _iso(d.last_attempt_at),
        "delivered_at": _iso(d.delivered_at),
    }


def attempt_json(a: WebhookAttempt) -> dict[str, Any]:
    return {"started_at": _iso(a.started_at), "duration_ms": a.duration_ms,
            "status_code": a.status_code, "error": a.error or None,
            "response": a.response_excerpt}


def list_deliveries(s: Session, company_id: int, endpoint_id: int, *, status: str | None,
                    after_id: int, limit: int) -> list[WebhookDelivery]:
    get_endpoint(s, company_id, endpoint_id)
    q = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id,
                                      WebhookDelivery.id > after_id)
    if status is not None:
        q = q.where(WebhookDelivery.status == status)
    return list(s.execute(q.order_by(WebhookDelivery.id).limit(limit)).scalars())


def get_delivery(s: Session, company_id: int, endpoint_id: int,
                 delivery_id: int) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    get_endpoint(s, company_id, endpoint_id)
    d = s.get(WebhookDelivery, delivery_id)
    if d is None or d.endpoint_id != endpoint_id:
        raise NotFound(f"no delivery {delivery_id}", field="delivery_id")
    attempts = s.execute(select(WebhookAttempt).where(WebhookAttempt.delivery_id == d.id)
                         .order_by(WebhookAttempt.id)).scalars().all()
    return d, list(attempts)


def pending_count(s: Session, endpoint_id: int) -> int:
    return int(s.execute(select(func.count()).select_from(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")).scalar_one())


# --- what the worker runs ----------------------------------------------------

BATCH = 20  # deliveries sent (one at a time, in order) per recording transaction


@dataclass(frozen=True)
class Message:
    delivery_id: int
    message_id: str
    payload: str


@dataclass(frozen=True)
class Job:
    """The next deliveries of one endpoint, whose lease the worker holds."""

    endpoint_id: int
    url: str
    keys: tuple[bytes, ...]
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class Outcome:
    """What one request of a delivery came to."""

    delivery_id: int
    started_at: dt.datetime
    ok: bool
    status_code: int | None
    error: str
    duration_ms: int
    excerpt: str


def _next_job(s: Session, ep: WebhookEndpoint, secret: bytes, now: dt.datetime) -> Job | None:
    rows = s.execute(
        select(WebhookDelivery.id, WebhookDelivery.message_id, WebhookDelivery.payload)
        .where(WebhookDelivery.endpoint_id == ep.id, WebhookDelivery.status == "pending")
        .order_by(WebhookDelivery.id).limit(BATCH)
    ).all()
    if not rows:
        return None
    return Job(ep.id, ep.url, tuple(signing_keys(secret, ep, now)),
               tuple(Message(r.id, r.message_id, r.payload) for r in rows))


def _due() -> tuple[dt.datetime, Select[WebhookEndpoint]]:
    now = utcnow()
    pending = exists().where(WebhookDelivery.endpoint_id == WebhookEndpoint.id,
                             WebhookDelivery.status == "pending")
    return now, (
        select(WebhookEndpoint)
        .join(Company, Company.id == WebhookEndpoint.company_id)
        .where(WebhookEndpoint.enabled.is_(True),
               or_(WebhookEndpoint.lease_until.is_(None), WebhookEndpoint.lease_until < now),
               or_(WebhookEndpoint.next_attempt_at.is_(None),
                   WebhookEndpoint.next_attempt_at <= now),
               or_(Company.change_seq > WebhookEndpoint.enqueued_seq, pending))
        .order_by(WebhookEndpoint.id)
    )


def has_work(s: Session) -> bool:
    """A cheap read: is any endpoint due? (So idle workers never take a write lock.)"""
    _, q = _due()
    return s.execute(q.with_only_columns(WebhookEndpoint.id).limit(1)).first() is not None


def claim(s: Session, owner: str, limit: int, lease_seconds: float, secret: bytes) -> list[Job]:
    """Lease up to `limit` due endpoints to `owner`; the next deliveries of each."""
    now, q = _due()
    q = q.limit(limit).with_for_update(of=WebhookEndpoint, skip_locked=True)
    jobs = []
    for ep in s.execute(q).scalars().all():
        enqueue(s, ep, secret)
        job = _next_job(s, ep, secret, now)
        if job is not None:
            ep.lease_owner, ep.lease_until = owner, now + dt.timedelta(seconds=lease_seconds)
            jobs.append(job)
    return jobs


def backoff(attempts: int, cfg: WebhookSettings, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt: exponential, capped, with jitter
    (a uniform draw in the upper half, so retries of many endpoints spread)."""
    delay = min(cfg.retry_max_seconds, cfg.retry_base_seconds * 2 ** max(attempts - 1, 0))
    return float(delay * (rng or random).uniform(0.5, 1.0))


def record(s: Session, owner: str, endpoint_id: int, outcomes: Sequence[Outcome],
           cfg: WebhookSettings, secret: bytes, lease_seconds: float) -> Job | None:
    """Write what the requests came to (all succeeded but perhaps the last);
    the next deliveries to send while the lease holds (None: released, after
    a failure, with the queue empty, or because the lease was lost)."""
    now = utcnow()
    ep = s.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    failed: WebhookDelivery | None = None
    for o in outcomes:
        d = s.get(WebhookDelivery, o.delivery_id)
        if d is None:  # deleted with its endpoint meanwhile
            continue
        s.add(WebhookAttempt(delivery_id=d.id, endpoint_id=endpoint_id, started_at=o.started_at,
                             duration_ms=o.duration_ms, status_code=o.status_code,
                             error=o.error, response_excerpt=o.excerpt))
        d.attempts += 1
        d.last_attempt_at, d.last_status_code, d.last_error = o.started_at, o.status_code, o.error
        if o.ok:
            d.status, d.delivered_at = "succeeded", now
        else:
            failed = d
    if ep is None or ep.lease_owner != owner:
        return None
    if failed is None:
        ep.failing_since = ep.next_attempt_at = None
        if ep.enabled:
            enqueue(s, ep, secret)
            nxt = _next_job(s, ep, secret, now)
            if nxt is not None:
                ep.lease_until = now + dt.timedelta(seconds=lease_seconds)
                return nxt
    else:
        if ep.failing_since is None:
            ep.failing_since = failed.last_attempt_at or now
        failing_for = (now - ep.failing_since).total_seconds()
        if ep.enabled and failing_for >= cfg.disable_after_seconds:
            ep.enabled, ep.disabled_at = False, now
            ep.disabled_reason = (f"deliveries failed for {failing_for:.0f} s "
                                  f"(last: {failed.last_error or failed.last_status_code})")[:500]
            ep.version += 1
            ep.updated_at = now
            repo.log_change(s, ep.company_id, "webhook_endpoint.disabled", "webhook_endpoint",
                            ep.id, WORKER, {"url": ep.url, "reason": ep.disabled_reason,
                                            "failing_since": ep.failing_since.isoformat(),
                                            "pending": pending_count(s, ep.id)})
        else:
            ep.next_attempt_at = now + dt.timedelta(seconds=backoff(failed.attempts, cfg))
    ep.lease_owner = ep.lease_until = None
    return None


def release(s: Session, owner: str, endpoint_id: int) -> None:
    """Give a lease back (a worker stopping)."""
    ep = s.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if ep is not None and ep.lease_owner == owner:
        ep.lease_owner = ep.lease_until = None
