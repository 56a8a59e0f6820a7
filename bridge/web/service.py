"""Read-side units of work for the console pages (sync `Session`, no aiohttp).

What the pages need in one round trip each: the staff list with its
filters, one staff member with their groups, the change log page by page
with names resolved. Writes go through the owning services
(`bridge.db.repo`, `bridge.feeds.service`, the CalDAV app passwords);
nothing here mutates except `log_invitation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.db import repo
from bridge.db.models import Appointment, ChangeEntry, Group, GroupMember, Staff
from bridge.domain.appointments import SOURCES, iso_start_end
from bridge.errors import Invalid
from bridge.web.describe import Described, describe


@dataclass(frozen=True)
class StaffRow:
    id: int
    name: str
    email: str
    timezone: str
    active: bool
    groups: list[str]


def staff_rows(s: Session, company_id: int, *, search: str = "",
               group_id: int | None = None) -> list[StaffRow]:
    """Staff of the company, by name; `search` matches name or email
    (case-insensitive substring), `group_id` keeps a group's members."""
    people = repo.list_staff(s, company_id, group_id=group_id)
    needle = search.strip().lower()
    memberships: dict[int, list[str]] = {}
    for staff_id, name in s.execute(  # one query, not one per staff member
        select(GroupMember.staff_id, Group.name).join(Group, Group.id == GroupMember.group_id)
        .where(Group.company_id == company_id).order_by(Group.id)
    ):
        memberships.setdefault(staff_id, []).append(name)
    rows = []
    for p in sorted(people, key=lambda p: p.name.lower()):
        if needle and needle not in p.name.lower() and needle not in p.email:
            continue
        rows.append(StaffRow(p.id, p.name, p.email, p.timezone, p.active,
                             memberships.get(p.id, [])))
    return rows


def groups(s: Session, company_id: int) -> Sequence[Group]:
    return repo.list_groups(s, company_id)


def names(s: Session, company_id: int) -> tuple[dict[str, str], dict[int, str]]:
    """(lower-case email -> name, id -> name) for the company's staff."""
    by_email: dict[str, str] = {}
    by_id: dict[int, str] = {}
    for sid, email, name in s.execute(
        select(Staff.id, Staff.email, Staff.name).where(Staff.company_id == company_id)
    ):
        by_email[email.lower()] = name
        by_id[sid] = name
    return by_email, by_id


@dataclass(frozen=True)
class ChangesPage:
    entries: list[Described]
    older: int | None  # `before` for the next page, None at the end


def recent_changes(s: Session, company_id: int, *, staff_id: int | None = None,
                   source: str | None = None, before: int | None = None,
                   limit: int = 50, timezone: str = "UTC") -> ChangesPage:
    """The change log newest first, in words; filters are checked (a staff id
    of another company is NotFound, an unknown source Invalid)."""
    if staff_id is not None:
        repo.get_staff(s, company_id, staff_id)
    if source is not None and source not in SOURCES:
        raise Invalid(f"source must be one of {', '.join(SOURCES)}", field="source")
    q = select(ChangeEntry).where(ChangeEntry.company_id == company_id)
    if staff_id is not None:
        q = q.where(ChangeEntry.staff_id == staff_id)
    if source is not None:
        q = q.where(ChangeEntry.source == source)
    if before is not None:
        q = q.where(ChangeEntry.seq < before)
    rows = list(s.execute(q.order_by(ChangeEntry.seq.desc()).limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    by_email, by_id = names(s, company_id)
    appt_ids = {r.entity_id for r in rows if r.entity == "appointment"}
    appts: dict[int, dict[str, Any]] = {}
    if appt_ids:
        for appt in s.execute(select(Appointment).where(
                Appointment.company_id == company_id, Appointment.id.in_(appt_ids))).scalars():
            start, end = iso_start_end(appt)
            appts[appt.id] = {"service_name": appt.service_name,
                              "customer_name": appt.customer_name, "start": start, "end": end}
    entries = [describe(r, by_email, by_id, appts, timezone) for r in rows]
    return ChangesPage(entries, rows[-1].seq if more and rows else None)


def log_invitation(s: Session, company_id: int, staff_id: int, admin_email: str,
                   subject: str) -> None:
    """The invitation goes into the change log (who invited whom, when)."""
    staff = repo.get_staff(s, company_id, staff_id)
    repo.log_change(s, company_id, "invitation.sent", "staff", staff.id,
                    repo.Actor("admin", admin_email), {"to": staff.email, "subject": subject},
                    staff_id=staff.id)
