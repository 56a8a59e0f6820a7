"""App passwords: how staff log in to CalDAV (units of work, no HTTP).

An admin issues a password per device (API, CLI); it is shown once and kept
only as a scrypt hash (DESIGN rule 6). `login` checks email + password for the
Radicale auth plugin: failures are counted per user and per client address in
the database (so every worker sees them) and refused past
`[caldav] login_attempts` per `login_window_seconds`.

scrypt costs ~50 ms, too much for every CalDAV request; `LoginCache` remembers
which app password a (login, password) pair proved, keyed by a keyed hash of
the pair, and each hit is checked against the row again (not revoked, staff
active) so a revocation takes effect on the next request in every worker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bridge.config import CaldavSettings
from bridge.db import repo
from bridge.db.engine import Database
from bridge.db.models import AppPassword, LoginFailure, Staff, utcnow
from bridge.domain import appointments as rules
from bridge.domain.secrets import hash_password, verify_password
from bridge.errors import NotFound

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def new_password() -> str:
    """24 characters in four groups, easy to type on a phone: xxxxxx-xxxxxx-…"""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(24))
    return "-".join(raw[i:i + 6] for i in range(0, 24, 6))


def app_password_json(row: AppPassword) -> dict[str, Any]:
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {"id": row.id, "staff_id": row.staff_id, "label": row.label,
            "created_at": iso(row.created_at), "last_used_at": iso(row.last_used_at),
            "revoked_at": iso(row.revoked_at)}


def create(s: Session, company_id: int, staff_id: int, label: str,
           actor: repo.Actor) -> tuple[AppPassword, str]:
    """A new app password; the clear text is returned once and never stored."""
    staff = repo.get_staff(s, company_id, staff_id)
    label = rules.check_text(label, "label", 200)
    password = new_password()
    row = AppPassword(company_id=company_id, staff_id=staff.id, label=label,
                      password_hash=hash_password(password), created_at=utcnow())
    s.add(row)
    s.flush()
    repo.log_change(s, company_id, "app_password.created", "app_password", row.id, actor,
                    {"label": label}, staff_id=staff.id)
    return row, password


def list_for(s: Session, company_id: int, staff_id: int) -> Sequence[AppPassword]:
    repo.get_staff(s, company_id, staff_id)
    return s.execute(select(AppPassword).where(AppPassword.staff_id == staff_id)
                     .order_by(AppPassword.id)).scalars().all()


def revoke(s: Session, company_id: int, staff_id: int, password_id: int,
           actor: repo.Actor) -> AppPassword:
    row = s.get(AppPassword, password_id)
    if row is None or row.company_id != company_id or row.staff_id != staff_id:
        raise NotFound(f"no app password {password_id}", field="pw_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        repo.log_change(s, company_id, "app_password.revoked", "app_password", row.id, actor,
                        {"label": row.label}, staff_id=staff_id)
    return row


# --- login -----------------------------------------------------------------------

@dataclass(frozen=True)
class LoginResult:
    email: str
    password_id: int


class LoginCache:
    """(login, password) digests proven by scrypt -> app password id (per process)."""

    def __init__(self, ttl: dt.timedelta = dt.timedelta(minutes=10), size: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl, self._size = ttl, size
        self._entries: dict[bytes, tuple[int, dt.datetime]] = {}
        self._lock = threading.Lock()

    def digest(self, login: str, password: str) -> bytes:
        return hmac.new(self._key, f"{login}\x00{password}".encode(), hashlib.sha256).digest()

    def get(self, digest: bytes, now: dt.datetime) -> int | None:
        with self._lock:
            hit = self._entries.get(digest)
            if hit is None or now - hit[1] > self._ttl:
                self._entries.pop(digest, None)
                return None
            return hit[0]

    def put(self, digest: bytes, password_id: int, now: dt.datetime) -> None:
        with self._lock:
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[digest] = (password_id, now)


def _failures(s: Session, key: str, since: dt.datetime) -> int:
    return s.execute(select(func.count(LoginFailure.id)).where(
        LoginFailure.key == key, LoginFailure.at >= since)).scalar_one()


def _cached_row(s: Session, email: str, password: str, cache: LoginCache,
                now: dt.datetime) -> AppPassword | None:
    cached = cache.get(cache.digest(email, password), now)
    if cached is None:
        return None
    return s.execute(select(AppPassword).join(Staff, Staff.id == AppPassword.staff_id).where(
        AppPassword.id == cached, AppPassword.revoked_at.is_(None),
        Staff.active.is_(True), Staff.email == email)).scalar_one_or_none()


def login(db: Database, email: str, password: str, addr: str, settings: CaldavSettings,
          cache: LoginCache, now: dt.datetime | None = None) -> LoginResult | None:
    """The staff member an app password proves, or None (wrong, revoked, limited).

    Three short transactions, none held across the ~50 ms of scrypt: read
    the candidates (and the failure counts), verify, then record the use or
    the failure."""
    now = now or utcnow()
    email = email.strip().lower()
    keys = [f"user:{email}"] + ([f"addr:{addr}"] if addr else [])
    digest = cache.digest(email, password)
    with db.sync_session() as s:
        row = _cached_row(s, email, password, cache, now)
        if row is not None and row.last_used_at is not None and (
                now - row.last_used_at <= LAST_USED_RESOLUTION):
            return LoginResult(email, row.id)
        proven = row.id if row is not None else None
        since = now - dt.timedelta(seconds=settings.login_window_seconds)
        limited = proven is None and any(
            _failures(s, k, since) >= settings.login_attempts for k in keys)
        candidates = [] if proven is not None or limited else [
            (r.id, r.password_hash) for r in s.execute(
                select(AppPassword).join(Staff, Staff.id == AppPassword.staff_id).where(
                    Staff.email == email, Staff.active.is_(True),
                    AppPassword.revoked_at.is_(None))).scalars()]
    if limited:
        return None
    if proven is None:
        if not candidates:
            verify_password(password, _DUMMY_HASH)  # same cost as a real check
        proven = next((pid for pid, h in candidates if verify_password(password, h)), None)
    with db.sync_session(write=True) as s:
        if proven is None:
            for k in keys:
                s.add(LoginFailure(key=k, at=now))
            s.execute(delete(LoginFailure).where(LoginFailure.at < now - dt.timedelta(days=1)))
            return None
        cache.put(digest, proven, now)
        found = s.get(AppPassword, proven)
        if found is None or found.revoked_at is not None:
            return None
        _touch(found, now)
        return LoginResult(email, proven)


def _touch(row: AppPassword, now: dt.datetime) -> None:
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
