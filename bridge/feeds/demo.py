"""Feed links for `calbridge demo` (registered in `bridge.demo.DEMO_EXTRAS`).

Idempotent: links are found again by their label, and their URLs are
re-derived from the server secret, so a second run prints the same URLs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import Settings
from bridge.db import repo
from bridge.db.models import Company, FeedLink, Staff
from bridge.feeds import service

ACTOR = repo.Actor("admin", "demo")


def _link(s: Session, settings: Settings, company: Company, label: str,
          payload: dict[str, Any]) -> dict[str, Any]:
    link = s.execute(select(FeedLink).where(
        FeedLink.company_id == company.id, FeedLink.label == label,
        FeedLink.revoked_at.is_(None))).scalars().first()
    if link is None:
        link = service.create_feed(s, company.id, {**payload, "label": label}, settings.secret(),
                                   ACTOR)
    return service.link_json(s, link, settings.secret(), settings.base_url)


def demo_feeds(s: Session, settings: Settings, company: Company,
               staff: list[Staff]) -> dict[str, Any]:
    links = [_link(s, settings, company, f"demo: {p.email}", {"staff_id": p.id}) for p in staff]
    for group in repo.list_groups(s, company.id):
        links.append(_link(s, settings, company, f"demo: group {group.slug}",
                           {"group_id": group.id, "privacy": "limited"}))
    links.append(_link(s, settings, company, "demo: company", {"scope": "company"}))
    links.append(_link(s, settings, company, "demo: company busy",
                       {"scope": "company", "privacy": "busy"}))
    return {"feeds": [f"{d['name']} ({d['privacy']}): {d['urls']['https']}" for d in links]}
