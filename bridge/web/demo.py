"""The demo's console admin: `admin@<company>.example.com` with a stable
password derived from the server secret (`bridge.demo.demo_secret`), so
`calbridge demo` prints the same sign-in every run without storing it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import Settings
from bridge.db.models import AdminUser, Company, Staff
from bridge.demo import DEMO_EXTRAS, demo_secret
from bridge.domain.secrets import verify_password
from bridge.web import accounts


def demo_admin(s: Session, settings: Settings, company: Company,
               staff: list[Staff]) -> dict[str, Any]:
    email = f"admin@{company.slug}.example.com"
    password = demo_secret(settings, "admin-password", 12)
    admin = s.execute(select(AdminUser).where(AdminUser.email == email)).scalar_one_or_none()
    if admin is None:
        accounts.create_admin(s, company.slug, email, password)
    elif not verify_password(password, admin.password_hash):
        accounts.set_password(s, admin.id, password)
    return {"admin_console": f"{settings.base_url}/admin/  (sign in as {email} / {password})"}


if demo_admin not in DEMO_EXTRAS:
    DEMO_EXTRAS.append(demo_admin)
