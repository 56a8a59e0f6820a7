"""CalDAV logins for `calbridge demo` (registered in `bridge.demo.DEMO_EXTRAS`).

Each demo staff member gets one app password labelled "demo", derived from
the server secret, so a second run prints the same login and nothing is
stored in clear text.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import Settings
from bridge.db import repo
from bridge.db.models import AppPassword, Company, Staff, utcnow
from bridge.demo import demo_secret
from bridge.domain.secrets import hash_password, verify_password

ACTOR = repo.Actor("admin", "demo")
LABEL = "demo"


def demo_password(settings: Settings, email: str) -> str:
    raw = demo_secret(settings, f"app-password:{email}", 24).lower().replace("_", "x")
    raw = raw.replace("-", "y")[:24]
    return "-".join(raw[i:i + 6] for i in range(0, 24, 6))


def demo_caldav(s: Session, settings: Settings, company: Company,
                staff: list[Staff]) -> dict[str, Any]:
    logins = []
    for person in staff:
        password = demo_password(settings, person.email)
        row = s.execute(select(AppPassword).where(
            AppPassword.staff_id == person.id, AppPassword.label == LABEL,
            AppPassword.revoked_at.is_(None))).scalars().first()
        if row is None or not verify_password(password, row.password_hash):
            row = AppPassword(company_id=company.id, staff_id=person.id, label=LABEL,
                              password_hash=hash_password(password), created_at=utcnow())
            s.add(row)
            s.flush()
            repo.log_change(s, company.id, "app_password.created", "app_password", row.id,
                            ACTOR, {"label": LABEL}, staff_id=person.id)
        logins.append(f"{person.email} / {password}")
    return {"caldav": [f"URL {settings.base_url}/dav/ (or just {settings.base_url}, "
                       "discovery via /.well-known/caldav)", *logins]}
