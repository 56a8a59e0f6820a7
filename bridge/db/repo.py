"""Units of work on the booking database, written once for every caller.

Each function takes a sync `Session` already inside a transaction (the
caller commits): the API runs them through `Database.write/read`
(`AsyncSession.run_sync`), the CLI and the Radicale plugin call them
directly. Every mutation appends its change-log entry here, in the same
transaction (DESIGN rule 2), and checks `if_match` before writing (rule 3).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.db.models import (
    ApiKey,
    Appointment,
    BlockedTime,
    ChangeEntry,
    Company,
    Group,
    GroupMember,
    Staff,
    utcnow,
)
from bridge.domain import appointments as rules
from bridge.domain.secrets import new_api_key, split_api_key, token_hash
from bridge.errors import Conflict, Invalid, NotFound, PreconditionFailed


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the side (`api`, `caldav`, `admin`, `sync`) and a name."""

    source: str
    name: str = ""


# Called after every appointment write, inside the transaction, to refresh
# the texts derived from the row (feed VEVENTs, the CalDAV item). Feature
# packages register here at import time (`bridge.feeds`, `bridge.dav`), so
# the unit of work stays the one place that writes an appointment.
APPOINTMENT_RENDERERS: list[Callable[[Session, Appointment], None]] = []


# --- change log ---------------------------------------------------------------

def log_change(
    s: Session,
    company_id: int,
    type: str,
    entity: str,
    entity_id: int,
    actor: Actor,
    data: Mapping[str, Any] | None = None,
    *,
    staff_id: int | None = None,
) -> ChangeEntry:
    """Append a change-log entry. The counter bump holds the company row lock
    until commit, so entries of one company commit in `seq` order."""
    seq = s.execute(
        update(Company)
        .where(Company.id == company_id)
        .values(change_seq=Company.change_seq + 1)
        .returning(Company.change_seq)
    ).scalar_one()
    entry = ChangeEntry(
        company_id=company_id, seq=seq, type=type, entity=entity, entity_id=entity_id,
        staff_id=staff_id, source=actor.source, actor=actor.name, data=dict(data or {}),
        created_at=utcnow(),
    )
    s.add(entry)
    s.flush()
    return entry


def company_version(s: Session, company_id: int) -> int:
    return s.execute(select(Company.change_seq).where(Company.id == company_id)).scalar_one()


# --- companies and keys -------------------------------------------------------

def create_company(
    s: Session, slug: str, name: str, timezone: str = "UTC", actor: Actor = Actor("admin")
) -> Company:
    slug = rules.check_slug(slug)
    name = rules.check_text(name, "name", 200, required=True)
    timezone = rules.check_timezone(timezone)
    if s.execute(select(exists().where(Company.slug == slug))).scalar():
        raise Conflict(f"a company with slug {slug!r} exists", field="slug")
    company = Company(slug=slug, name=name, timezone=timezone, change_seq=0)
    s.add(company)
    s.flush()
    log_change(s, company.id, "company.created", "company", company.id, actor,
               {"slug": slug, "name": name})
    return company


def get_company(s: Session, slug: str) -> Company:
    company = s.execute(select(Company).where(Company.slug == slug)).scalar_one_or_none()
    if company is None:
        raise NotFound(f"no company with slug {slug!r}", field="company")
    return company


def list_companies(s: Session) -> Sequence[Company]:
    return s.execute(select(Company).order_by(Company.id)).scalars().all()


def create_api_key(s: Session, company_id: int, secret: bytes, label: str = "") -> tuple[ApiKey, str]:
    """A new key; the full key is returned once and never stored."""
    prefix, key = new_api_key()
    row = ApiKey(company_id=company_id, prefix=prefix, key_hash=token_hash(key, secret),
                 label=rules.check_text(label, "label", 200))
    s.add(row)
    s.flush()
    log_change(s, company_id, "api_key.created", "api_key", row.id, Actor("admin"),
               {"prefix": prefix, "label": row.label})
    return row, key


def company_for_api_key(s: Session, key: str, secret: bytes) -> Company | None:
    """The company a key belongs to, or None (unknown, malformed, revoked)."""
    import hmac

    prefix = split_api_key(key)
    if prefix is None:
        return None
    row = s.execute(
        select(ApiKey, Company).join(Company, Company.id == ApiKey.company_id)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if row is None or not hmac.compare_digest(row[0].key_hash, token_hash(key, secret)):
        return None
    return row[1]


# --- groups -------------------------------------------------------------------

def list_groups(s: Session, company_id: int) -> Sequence[Group]:
    return s.execute(select(Group).where(Group.company_id == company_id).order_by(Group.id)).scalars().all()


def get_group(s: Session, company_id: int, group_id: int) -> Group:
    group = s.get(Group, group_id)
    if group is None or group.company_id != company_id:
        raise NotFound(f"no group {group_id}", field="group_id")
    return group


def get_group_by_slug(s: Session, company_id: int, slug: str) -> Group:
    group = s.execute(
        select(Group).where(Group.company_id == company_id, Group.slug == slug)
    ).scalar_one_or_none()
    if group is None:
        raise NotFound(f"no group with slug {slug!r}", field="group")
    return group


def _check_version(current: int, if_match: int | None) -> None:
    if if_match is not None and if_match != current:
        raise PreconditionFailed("the resource changed since you read it (If-Match does not match)")


def create_group(s: Session, company_id: int, payload: Mapping[str, Any], actor: Actor) -> Group:
    _only(payload, {"slug", "name"})
    slug = rules.check_slug(payload.get("slug"))
    name = rules.check_text(payload.get("name"), "name", 200, required=True)
    if s.execute(select(exists().where(Group.company_id == company_id, Group.slug == slug))).scalar():
        raise Conflict(f"a group with slug {slug!r} exists", field="slug")
    group = Group(company_id=company_id, slug=slug, name=name, version=1)
    s.add(group)
    s.flush()
    log_change(s, company_id, "group.created", "group", group.id, actor, {"slug": slug, "name": name})
    return group


def update_group(
    s: Session, company_id: int, group_id: int, payload: Mapping[str, Any], actor: Actor,
    if_match: int | None = None,
) -> Group:
    _only(payload, {"slug", "name"})
    group = get_group(s, company_id, group_id)
    _check_version(group.version, if_match)
    changes: dict[str, Any] = {}
    if "slug" in payload:
        slug = rules.check_slug(payload["slug"])
        if slug != group.slug and s.execute(
            select(exists().where(Group.company_id == company_id, Group.slug == slug))
        ).scalar():
            raise Conflict(f"a group with slug {slug!r} exists", field="slug")
        changes["slug"] = slug
    if "name" in payload:
        changes["name"] = rules.check_text(payload["name"], "name", 200, required=True)
    diff = {k: {"before": getattr(group, k), "after": v} for k, v in changes.items()
            if getattr(group, k) != v}
    if diff:
        for k, v in changes.items():
            setattr(group, k, v)
        group.version += 1
        group.updated_at = utcnow()
        log_change(s, company_id, "group.updated", "group", group.id, actor, {"changes": diff})
    return group


def delete_group(s: Session, company_id: int, group_id: int, actor: Actor,
                 if_match: int | None = None) -> None:
    group = get_group(s, company_id, group_id)
    _check_version(group.version, if_match)
    log_change(s, company_id, "group.deleted", "group", group.id, actor,
               {"slug": group.slug, "name": group.name})
    s.delete(group)


def add_member(s: Session, company_id: int, group_id: int, staff_id: int, actor: Actor) -> bool:
    """Add a staff member to a group; False if already a member."""
    group = get_group(s, company_id, group_id)
    staff = get_staff(s, company_id, staff_id)
    if s.get(GroupMember, (group.id, staff.id)) is not None:
        return False
    s.add(GroupMember(group_id=group.id, staff_id=staff.id))
    s.flush()
    s.expire(group, ["members"])
    s.expire(staff, ["groups"])
    log_change(s, company_id, "group.member_added", "group", group.id, actor,
               {"staff_id": staff.id}, staff_id=staff.id)
    return True


def remove_member(s: Session, company_id: int, group_id: int, staff_id: int, actor: Actor) -> None:
    group = get_group(s, company_id, group_id)
    staff = get_staff(s, company_id, staff_id)
    member = s.get(GroupMember, (group.id, staff.id))
    if member is None:
        raise NotFound(f"staff {staff_id} is not a member of group {group_id}", field="staff_id")
    s.delete(member)
    s.flush()
    s.expire(group, ["members"])
    s.expire(staff, ["groups"])
    log_change(s, company_id, "group.member_removed", "group", group.id, actor,
               {"staff_id": staff.id}, staff_id=staff.id)


# --- staff --------------------------------------------------------------------

STAFF_FIELDS = {"email", "name", "timezone", "active", "group_ids"}


def list_staff(s: Session, company_id: int, *, group_id: int | None = None,
               active: bool | None = None) -> Sequence[Staff]:
    q = select(Staff).where(Staff.company_id == company_id)
    if group_id is not None:
        get_group(s, company_id, group_id)
        q = q.join(GroupMember, GroupMember.staff_id == Staff.id).where(GroupMember.group_id == group_id)
    if active is not None:
        q = q.where(Staff.active.is_(active))
    return s.execute(q.order_by(Staff.id)).scalars().all()


def get_staff(s: Session, company_id: int, staff_id: int) -> Staff:
    staff = s.get(Staff, staff_id)
    if staff is None or staff.company_id != company_id:
        raise NotFound(f"no staff member {staff_id}", field="staff_id")
    return staff


def get_staff_by_email(s: Session, company_id: int | None, email: str) -> Staff:
    q = select(Staff).where(Staff.email == email.strip().lower())
    if company_id is not None:
        q = q.where(Staff.company_id == company_id)
    staff = s.execute(q).scalar_one_or_none()
    if staff is None:
        raise NotFound(f"no staff member with email {email!r}", field="email")
    return staff


def _staff_snapshot(staff: Staff) -> dict[str, Any]:
    return {"email": staff.email, "name": staff.name, "timezone": staff.timezone,
            "active": staff.active}


def create_staff(s: Session, company_id: int, payload: Mapping[str, Any], actor: Actor) -> Staff:
    _only(payload, STAFF_FIELDS)
    email = rules.check_email(payload.get("email"))
    name = rules.check_text(payload.get("name"), "name", 200, required=True)
    company = s.get(Company, company_id)
    assert company is not None
    timezone = rules.check_timezone(payload.get("timezone", company.timezone))
    active = payload.get("active", True)
    if not isinstance(active, bool):
        raise Invalid("active must be true or false", field="active")
    group_ids = _group_ids(s, company_id, payload.get("group_ids", []))
    if s.execute(select(exists().where(Staff.email == email))).scalar():
        raise Conflict(f"a staff member with email {email!r} exists", field="email")
    staff = Staff(company_id=company_id, email=email, name=name, timezone=timezone,
                  active=active, version=1)
    s.add(staff)
    s.flush()
    log_change(s, company_id, "staff.created", "staff", staff.id, actor,
               {"after": _staff_snapshot(staff)}, staff_id=staff.id)
    for gid in group_ids:
        add_member(s, company_id, gid, staff.id, actor)
    return staff


def _group_ids(s: Session, company_id: int, value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                              for v in value):
        raise Invalid("group_ids must be a list of group ids", field="group_ids")
    for gid in value:
        get_group(s, company_id, gid)
    return list(dict.fromkeys(value))


def update_staff(s: Session, company_id: int, staff_id: int, payload: Mapping[str, Any],
                 actor: Actor, if_match: int | None = None) -> Staff:
    _only(payload, STAFF_FIELDS)
    staff = get_staff(s, company_id, staff_id)
    _check_version(staff.version, if_match)
    changes: dict[str, Any] = {}
    if "email" in payload:
        email = rules.check_email(payload["email"])
        if email != staff.email and s.execute(select(exists().where(Staff.email == email))).scalar():
            raise Conflict(f"a staff member with email {email!r} exists", field="email")
        changes["email"] = email
    if "name" in payload:
        changes["name"] = rules.check_text(payload["name"], "name", 200, required=True)
    if "timezone" in payload:
        changes["timezone"] = rules.check_timezone(payload["timezone"])
    if "active" in payload:
        if not isinstance(payload["active"], bool):
            raise Invalid("active must be true or false", field="active")
        changes["active"] = payload["active"]
    new_groups = _group_ids(s, company_id, payload["group_ids"]) if "group_ids" in payload else None
    diff = {k: {"before": getattr(staff, k), "after": v} for k, v in changes.items()
            if getattr(staff, k) != v}
    if diff:
        for k, v in changes.items():
            setattr(staff, k, v)
        staff.version += 1
        staff.updated_at = utcnow()
        log_change(s, company_id, "staff.updated", "staff", staff.id, actor, {"changes": diff},
                   staff_id=staff.id)
    if new_groups is not None:
        current = {g.id for g in staff.groups}
        for gid in sorted(current - set(new_groups)):
            remove_member(s, company_id, gid, staff.id, actor)
        for gid in new_groups:
            if gid not in current:
                add_member(s, company_id, gid, staff.id, actor)
    return staff


def delete_staff(s: Session, company_id: int, staff_id: int, actor: Actor,
                 if_match: int | None = None) -> None:
    staff = get_staff(s, company_id, staff_id)
    _check_version(staff.version, if_match)
    has_appointments = s.execute(
        select(exists().where(Appointment.staff_id == staff.id))
    ).scalar()
    if has_appointments:
        raise Conflict(
            "this staff member has appointments; deactivate them (active=false) instead",
            field="staff_id",
        )
    log_change(s, company_id, "staff.deleted", "staff", staff.id, actor,
               {"before": _staff_snapshot(staff)}, staff_id=staff.id)
    s.execute(delete(BlockedTime).where(BlockedTime.staff_id == staff.id))
    s.delete(staff)


# --- appointments -------------------------------------------------------------

@dataclass(frozen=True)
class AppointmentFilter:
    staff_id: int | None = None
    group_id: int | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    status: str | None = None
    updated_since: dt.datetime | None = None
    after_id: int = 0
    limit: int = 100


def appointment_query(company_id: int, f: AppointmentFilter) -> Select[Any]:
    q = select(Appointment).where(Appointment.company_id == company_id)
    if f.staff_id is not None:
        q = q.where(Appointment.staff_id == f.staff_id)
    if f.group_id is not None:
        q = q.where(Appointment.staff_id.in_(
            select(GroupMember.staff_id).where(GroupMember.group_id == f.group_id)))
    if f.start is not None:
        q = q.where(Appointment.last_occurrence > f.start)
    if f.end is not None:
        q = q.where(Appointment.first_occurrence < f.end)
    if f.status is not None:
        q = q.where(Appointment.status == f.status)
    if f.updated_since is not None:
        q = q.where(Appointment.updated_at >= f.updated_since)
    return q


def list_appointments(s: Session, company_id: int, f: AppointmentFilter) -> list[Appointment]:
    if f.staff_id is not None:
        get_staff(s, company_id, f.staff_id)
    if f.group_id is not None:
        get_group(s, company_id, f.group_id)
    q = appointment_query(company_id, f).where(Appointment.id > f.after_id)
    return list(s.scalars(q.order_by(Appointment.id).limit(f.limit)))


def get_appointment(s: Session, company_id: int, appointment_id: int) -> Appointment:
    appt = s.get(Appointment, appointment_id)
    if appt is None or appt.company_id != company_id:
        raise NotFound(f"no appointment {appointment_id}", field="appointment_id")
    return appt


def get_appointment_by_external_id(s: Session, company_id: int, external_id: str) -> Appointment | None:
    return s.execute(
        select(Appointment).where(
            Appointment.company_id == company_id, Appointment.external_id == external_id
        )
    ).scalar_one_or_none()


def new_etag(uid: str, version: int) -> str:
    return hashlib.sha256(f"{uid}:{version}:{uuid.uuid4()}".encode()).hexdigest()[:24]


def _render(s: Session, appt: Appointment) -> None:
    for renderer in APPOINTMENT_RENDERERS:
        renderer(s, appt)


def create_appointment(
    s: Session, company_id: int, payload: Mapping[str, Any], actor: Actor, *,
    uid: str | None = None, href: str | None = None, ical: str | None = None,
) -> Appointment:
    """A new booking. `uid`/`href`/`ical` are set when a CalDAV client created it."""
    if "staff_id" not in payload:
        raise Invalid("staff_id is required", field="staff_id")
    staff = get_staff(s, company_id, _int_field(payload, "staff_id"))
    values, timing = rules.validate_fields(payload, current=None, default_timezone=staff.timezone)
    assert timing is not None
    ext = values.get("external_id")
    if ext is not None and get_appointment_by_external_id(s, company_id, ext) is not None:
        raise Conflict(f"an appointment with external_id {ext!r} exists", field="external_id")
    uid = uid or f"{uuid.uuid4()}@calbridge"
    now = utcnow()
    columns: dict[str, Any] = {k: "" for k in rules.TEXT_FIELDS}
    columns.update(status="confirmed", external_id=None)
    columns.update(values)
    columns.update(timing.as_columns())
    appt = Appointment(
        company_id=company_id, uid=uid, href=href or f"{uid}.ics", sequence=0, version=1,
        etag=new_etag(uid, 1), last_source=actor.source, last_actor=actor.name, ical=ical,
        created_at=now, updated_at=now, **columns,
    )
    s.add(appt)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict("an appointment with this uid or external_id exists", field="external_id") from None
    _render(s, appt)
    log_change(s, company_id, "appointment.created", "appointment", appt.id, actor,
               {"after": rules.snapshot(appt)}, staff_id=appt.staff_id)
    return appt


def _int_field(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"{name} must be an integer", field=name)
    return value


def update_appointment(
    s: Session, company_id: int, appointment_id: int, payload: Mapping[str, Any], actor: Actor, *,
    if_match: str | None = None, ical: str | None = None,
) -> tuple[Appointment, bool]:
    """Apply a partial update. Returns (row, changed). A save that changes
    nothing keeps version, ETag and SEQUENCE."""
    appt = get_appointment(s, company_id, appointment_id)
    return _apply_update(s, appt, payload, actor, if_match=if_match, ical=ical)


def _apply_update(
    s: Session, appt: Appointment, payload: Mapping[str, Any], actor: Actor, *,
    if_match: str | None, ical: str | None = None,
) -> tuple[Appointment, bool]:
    if if_match is not None and if_match != appt.etag:
        raise PreconditionFailed("the appointment changed since you read it (If-Match does not match)")
    values, timing = rules.validate_fields(payload, current=appt, default_timezone=appt.timezone)
    if "staff_id" in values:
        get_staff(s, appt.company_id, values["staff_id"])
    ext = values.get("external_id")
    if ext is not None and ext != appt.external_id:
        other = get_appointment_by_external_id(s, appt.company_id, ext)
        if other is not None:
            raise Conflict(f"an appointment with external_id {ext!r} exists", field="external_id")
    if timing is not None:
        values.update(timing.as_columns())
    before_cols = {k: getattr(appt, k) for k in values}
    changed_cols = {k: v for k, v in values.items() if before_cols[k] != v}
    ical_changed = ical is not None and ical != appt.ical
    if not changed_cols and not ical_changed:
        return appt, False
    before = rules.snapshot(appt)
    material = rules.material_change(before_cols, changed_cols)
    for k, v in changed_cols.items():
        setattr(appt, k, v)
    if ical is not None:
        appt.ical = ical
    appt.version += 1
    if material:
        appt.sequence += 1
    appt.etag = new_etag(appt.uid, appt.version)
    appt.updated_at = utcnow()
    appt.last_source, appt.last_actor = actor.source, actor.name
    s.flush()
    _render(s, appt)
    if changed_cols:
        after = rules.snapshot(appt)
        kind, fields = rules.classify_change(before, after)
        data: dict[str, Any] = {
            "fields": fields,
            "before": {k: before[k] for k in fields},
            "after": {k: after[k] for k in fields},
        }
        if kind == "appointment.rescheduled":
            data["before"].update(start=before["start"], end=before["end"])
            data["after"].update(start=after["start"], end=after["end"])
        log_change(s, appt.company_id, kind, "appointment", appt.id, actor, data,
                   staff_id=appt.staff_id)
    return appt, True


def cancel_appointment(s: Session, company_id: int, appointment_id: int, actor: Actor, *,
                       if_match: str | None = None) -> Appointment:
    appt, _ = update_appointment(s, company_id, appointment_id, {"status": "cancelled"}, actor,
                                 if_match=if_match)
    return appt


def upsert_appointment(
    s: Session, company_id: int, external_id: str, payload: Mapping[str, Any], actor: Actor, *,
    if_match: str | None = None, if_none_match: bool = False,
) -> tuple[Appointment, bool, bool]:
    """Idempotent create-or-replace by the booking system's id.
    Returns (row, created, changed)."""
    if payload.get("external_id", external_id) != external_id:
        raise Invalid("external_id in the body differs from the URL", field="external_id")
    body = {**payload, "external_id": external_id}
    existing = get_appointment_by_external_id(s, company_id, external_id)
    if existing is None:
        if if_match is not None:
            raise PreconditionFailed("no appointment with this external_id (If-Match given)")
        return create_appointment(s, company_id, body, actor), True, True
    if if_none_match:
        raise PreconditionFailed("an appointment with this external_id exists (If-None-Match: *)")
    full = {k: "" for k in rules.TEXT_FIELDS} | {"status": "confirmed"} | body
    if "all_day" not in full:
        full["all_day"] = False
    appt, changed = _apply_update(s, existing, full, actor, if_match=if_match)
    return appt, False, changed


# --- helpers ------------------------------------------------------------------

def _only(payload: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field=unknown[0])


def search_staff(s: Session, company_id: int, text: str) -> Sequence[Staff]:
    like = f"%{text.lower()}%"
    return s.execute(
        select(Staff).where(Staff.company_id == company_id,
                            or_(func.lower(Staff.name).like(like), Staff.email.like(like)))
        .order_by(Staff.name)
    ).scalars().all()
