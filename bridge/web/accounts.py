"""Admin users of the console: creation and sign-in (units of work).

Each function takes a sync `Session` inside a transaction, like
`bridge.db.repo`. Passwords are stored as scrypt hashes only
(`bridge.domain.secrets`). Sign-in is rate limited through the shared
`login_failures` table, so every worker sees the same count (DESIGN rule
7): after `[web] login_attempts` failures within `login_window_seconds`
for one email, or from one address, further attempts are refused before
any password is checked, until the window has passed. No aiohttp here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bridge.config import WebSettings
from bridge.db import repo
from bridge.db.models import AdminUser, Company, LoginFailure, utcnow
from bridge.domain import appointments as rules
from bridge.domain.secrets import hash_password, random_token, verify_password
from bridge.errors import BridgeError, Conflict, Unauthorized

# A hash to verify against when the email is unknown, so that a miss costs
# the same scrypt time as a wrong password (no user enumeration by timing).
_DUMMY_HASH = hash_password("calbridge-no-such-admin")


class TooManyAttempts(BridgeError):
    title = "Too many sign-in attempts"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class AdminInfo:
    id: int
    company_id: int
    company_slug: str
    company_name: str
    company_timezone: str
    email: str
    password_hash: str


def _info(admin: AdminUser, company: Company) -> AdminInfo:
    return AdminInfo(admin.id, company.id, company.slug, company.name, company.timezone,
                     admin.email, admin.password_hash)


def new_password() -> str:
    """A one-time password for a new admin: 128 random bits, easy to paste."""
    return random_token(16)


def create_admin(s: Session, company_slug: str, email: str,
                 password: str | None = None) -> tuple[AdminUser, str]:
    """A new admin of a company; returns (row, password). The password is
    shown once and stored only as a slow hash."""
    company = repo.get_company(s, company_slug)
    email = rules.check_email(email)
    if s.execute(select(AdminUser).where(AdminUser.email == email)).scalar_one_or_none():
        raise Conflict(f"an admin with email {email!r} exists", field="email")
    password = password or new_password()
    admin = AdminUser(company_id=company.id, email=email, password_hash=hash_password(password),
                      created_at=utcnow())
    s.add(admin)
    s.flush()
    repo.log_change(s, company.id, "admin.created", "admin", admin.id,
                    repo.Actor("admin", "cli"), {"email": email})
    return admin, password


def set_password(s: Session, admin_id: int, password: str) -> None:
    admin = s.get(AdminUser, admin_id)
    if admin is None:
        raise Unauthorized("no such admin")
    admin.password_hash = hash_password(password)


def _failures(s: Session, keys: list[str], since: dt.datetime) -> tuple[int, dt.datetime | None]:
    """The largest failure count of any key since `since`, and the oldest such failure."""
    worst, oldest = 0, None
    for key in keys:
        count, first = s.execute(
            select(func.count(), func.min(LoginFailure.at))
            .where(LoginFailure.key == key, LoginFailure.at > since)
        ).one()
        if count > worst:
            worst, oldest = count, first
    return worst, oldest


def _keys(email: str, remote: str) -> list[str]:
    return [f"admin-user:{email.strip().lower()}"[:300], f"admin-addr:{remote}"[:300]]


def check_rate(s: Session, email: str, remote: str, web: WebSettings) -> None:
    """Raise TooManyAttempts if this email or address is over the limit."""
    now = utcnow()
    window = dt.timedelta(seconds=web.login_window_seconds)
    count, oldest = _failures(s, _keys(email, remote), now - window)
    if count >= web.login_attempts:
        assert oldest is not None
        retry = max(1, int((oldest + window - now).total_seconds()) + 1)
        minutes = (retry + 59) // 60
        raise TooManyAttempts(
            f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
            retry_after=retry,
        )


def record_failure(s: Session, email: str, remote: str, web: WebSettings) -> None:
    """Count a failed sign-in; this key's failures older than the window go."""
    now = utcnow()
    keys = _keys(email, remote)
    s.execute(delete(LoginFailure).where(
        LoginFailure.key.in_(keys),
        LoginFailure.at < now - dt.timedelta(seconds=web.login_window_seconds)))
    for key in keys:
        s.add(LoginFailure(key=key, at=now))
    s.flush()


def authenticate(s: Session, email: str, password: str) -> AdminInfo | None:
    """The admin whose email and password match, else None. Always spends one
    scrypt verification. Rate limiting is the caller's (`check_rate`, then
    `record_failure` in its own transaction, so a failure is kept)."""
    email = email.strip().lower()
    row = s.execute(
        select(AdminUser, Company).join(Company, Company.id == AdminUser.company_id)
        .where(AdminUser.email == email)
    ).one_or_none()
    if row is None:
        verify_password(password, _DUMMY_HASH)
        return None
    admin, company = row
    if not verify_password(password, admin.password_hash):
        return None
    admin.last_login_at = utcnow()
    s.execute(delete(LoginFailure).where(LoginFailure.key == _keys(email, "")[0]))
    return _info(admin, company)


def load_admin(s: Session, admin_id: int) -> AdminInfo | None:
    row = s.execute(
        select(AdminUser, Company).join(Company, Company.id == AdminUser.company_id)
        .where(AdminUser.id == admin_id)
    ).one_or_none()
    return None if row is None else _info(*row)
