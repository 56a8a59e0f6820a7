"""External calendars in `calbridge demo` (registered in `bridge.demo.DEMO_EXTRAS`):
the commands that link a calendar for a demo staff member, and the health of
the links already made. The demo creates none itself: a link needs a real
calendar (a stock Radicale, an iCloud account, a Google secret address)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bridge.config import Settings
from bridge.db.models import Company, Staff
from bridge.sync import service


def demo_calendar_links(s: Session, settings: Settings, company: Company,
                        staff: list[Staff]) -> dict[str, Any]:
    who = staff[0].email if staff else "anna@demo.example.com"
    lines = [
        f"link an ICS URL:  calbridge calendar-link add --company {company.slug} "
        f"--staff {who} --ics https://…/basic.ics",
        f"link CalDAV:      CALDAV_PASSWORD=… calbridge calendar-link add --company "
        f"{company.slug} --staff {who} --caldav https://caldav.example.com/ --username USER "
        "--password-env CALDAV_PASSWORD --add-appointments",
        f"availability:     GET {settings.base_url}/api/v1/availability?staff="
        f"{staff[0].id if staff else 1}&start=…&end=…&working_hours=mon-fri%2009:00-17:00",
    ]
    for link in service.list_links(s, company.id):
        lines.append(f"#{link.id} {link.label or link.url_display} ({link.kind}) "
                     f"health={link.health}")
    return {"calendar_links": lines}
