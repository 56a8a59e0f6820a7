"""Demo data: one company, two groups, five staff in three time zones and a
few hundred appointments around today. Idempotent: a second run adds
nothing and prints the same credentials, which are derived from the server
secret (so they can be shown again without being stored in clear).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import random
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import Settings
from bridge.db import repo
from bridge.db.engine import Database
from bridge.db.models import ApiKey, Company, Staff
from bridge.domain.secrets import token_hash

COMPANY = ("demo", "Demo Health Clinic", "Europe/Paris")
GROUPS = [("physio", "Physiotherapy"), ("dental", "Dental care")]
STAFF = [
    ("anna@demo.example.com", "Anna Müller", "Europe/Paris", ["physio"]),
    ("ben@demo.example.com", "Ben Okafor", "Europe/London", ["physio"]),
    ("chloe@demo.example.com", "Chloé Durand", "Europe/Paris", ["dental"]),
    ("diego@demo.example.com", "Diego Fernández", "America/New_York", ["dental"]),
    ("emma@demo.example.com", "Emma Lindqvist", "Europe/Stockholm", ["physio", "dental"]),
]
SERVICES = ["Initial consultation", "Follow-up", "Check-up, 30 min", "Cleaning; full",
            "Sports massage", "X-ray review"]
CUSTOMERS = ["Léa Martin", "Oliver Smith", "Sofia García", "Jonas Weiß", "Amara Diallo",
             "Yuki Tanaka", "Noah Brown", "Inès Moreau", "Mateo Rossi", "Zoë Kowalski"]
ACTOR = repo.Actor("admin", "demo")

# Features add what the demo should create and print: (session, settings,
# company, staff) -> {"key": value} merged into the demo's output.
DEMO_EXTRAS: list[Callable[[Session, Settings, Company, list[Staff]], dict[str, Any]]] = []


def demo_secret(settings: Settings, name: str, nbytes: int = 32) -> str:
    """A stable secret for the demo, derived from the server secret."""
    digest = hmac.new(settings.secret(), f"demo:{name}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:nbytes]).decode().rstrip("=")


def _demo_api_key(s: Session, settings: Settings, company: Company) -> str:
    prefix = hmac.new(settings.secret(), b"demo:api-key-prefix", hashlib.sha256).hexdigest()[:12]
    key = f"cbk_{prefix}_{demo_secret(settings, 'api-key')}"
    if s.execute(select(ApiKey).where(ApiKey.prefix == prefix)).scalar_one_or_none() is None:
        s.add(ApiKey(company_id=company.id, prefix=prefix, key_hash=token_hash(key, settings.secret()),
                     label="demo"))
        s.flush()
    return key


def _appointments(s: Session, company: Company, staff: list[Staff], today: dt.date) -> int:
    rng = random.Random(20261122)
    created = 0
    for person in staff:
        tz = ZoneInfo(person.timezone)
        for offset in range(-28, 43):
            day = today + dt.timedelta(days=offset)
            if day.weekday() >= 5:
                continue
            if offset % 14 == 3 and person.email.startswith(("anna", "diego")):
                repo.create_appointment(s, company.id, {
                    "staff_id": person.id, "all_day": True, "start": day.isoformat(),
                    "end": (day + dt.timedelta(days=1)).isoformat(),
                    "service_name": "Training day", "location": "Head office",
                    "external_id": f"demo-{person.id}-{day.isoformat()}-allday",
                }, ACTOR)
                created += 1
                continue
            for slot in sorted(rng.sample(range(9, 17), rng.choice((1, 1, 2)))):
                start = dt.datetime.combine(day, dt.time(slot, rng.choice((0, 30))), tz)
                minutes = rng.choice((30, 45, 60))
                status = "cancelled" if rng.random() < 0.07 else (
                    "tentative" if rng.random() < 0.05 else "confirmed")
                customer = rng.choice(CUSTOMERS)
                repo.create_appointment(s, company.id, {
                    "staff_id": person.id,
                    "start": start.isoformat(),
                    "end": (start + dt.timedelta(minutes=minutes)).isoformat(),
                    "status": status,
                    "service_name": rng.choice(SERVICES),
                    "customer_name": customer,
                    "customer_email": customer.split()[0].lower().encode("ascii", "ignore")
                    .decode() + "@customer.example.com",
                    "customer_phone": f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} "
                                      f"{rng.randint(10, 99)} {rng.randint(10, 99)}",
                    "location": "Room " + str(rng.randint(1, 6)),
                    "notes": "First visit, bring referral letter" if rng.random() < 0.2 else "",
                    "external_id": f"demo-{person.id}-{start.isoformat()}",
                }, ACTOR)
                created += 1
    return created


def load_demo(db: Database, settings: Settings, today: dt.date | None = None) -> dict[str, Any]:
    today = today or dt.date.today()
    with db.sync_session(write=True) as s:
        company = s.execute(select(Company).where(Company.slug == COMPANY[0])).scalar_one_or_none()
        created = 0
        if company is None:
            company = repo.create_company(s, *COMPANY, actor=ACTOR)
            groups = {slug: repo.create_group(s, company.id, {"slug": slug, "name": name}, ACTOR)
                      for slug, name in GROUPS}
            for email, name, tz, group_slugs in STAFF:
                repo.create_staff(s, company.id, {
                    "email": email, "name": name, "timezone": tz,
                    "group_ids": [groups[g].id for g in group_slugs]}, ACTOR)
        staff = list(s.execute(select(Staff).where(Staff.company_id == company.id)
                               .order_by(Staff.id)).scalars())
        if created == 0 and not repo.list_appointments(
                s, company.id, repo.AppointmentFilter(limit=1)):
            created = _appointments(s, company, staff, today)
        key = _demo_api_key(s, settings, company)
        info: dict[str, Any] = {
            "company": company.slug,
            "base_url": settings.base_url,
            "api_key": key,
            "api": f"{settings.base_url}/api/v1/",
            "staff": [{"id": p.id, "email": p.email, "name": p.name, "timezone": p.timezone}
                      for p in staff],
            "appointments_created": created,
        }
        for extra in DEMO_EXTRAS:
            info.update(extra(s, settings, company, staff))
    info["_text"] = format_demo(info)
    return info


def format_demo(info: dict[str, Any]) -> str:
    lines = [f"Demo company '{info['company']}' is ready ({info['appointments_created']} "
             "appointments created this run).", ""]
    lines.append(f"  API:      {info['api']}  (Authorization: Bearer {info['api_key']})")
    lines.append(f"  try:      curl -H 'Authorization: Bearer {info['api_key']}' "
                 f"{info['api']}staff")
    for key, value in info.items():
        if key in ("company", "api_key", "api", "staff", "appointments_created", "base_url", "_text"):
            continue
        if isinstance(value, list):
            lines.append(f"  {key}:")
            lines += [f"    {v}" for v in value]
        else:
            lines.append(f"  {key}: {value}")
    lines.append("  staff:")
    lines += [f"    {p['name']} <{p['email']}> ({p['timezone']})" for p in info["staff"]]
    return "\n".join(lines)
