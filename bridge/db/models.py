"""SQLAlchemy 2 models: the booking database, which is also the CalDAV storage.

Only table definitions live here (no queries, no rules). The same schema runs
on SQLite and PostgreSQL; migrations in `bridge/db/migrations` create it.
Time stamps are stored as UTC (`UTCDateTime`) and come back time-zone aware.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Integer on SQLite (so INTEGER PRIMARY KEY is the rowid), BIGINT elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A time-zone aware datetime stored as naive UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # What a CalDAV DELETE of an appointment does: "cancel" the booking or "refuse" (403).
    caldav_delete: Mapped[str] = mapped_column(String(16), default="cancel")
    on_calendar_failure: Mapped[str] = mapped_column(String(16), default="keep_booking")
    # Per-company change counter. Bumping it is the last write of every
    # transaction that logs a change: the row lock makes sequence order
    # equal commit order, so a change-feed reader never skips an entry.
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("company_id", "slug"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[Staff]] = relationship(
        secondary="group_members", back_populates="groups", order_by="Staff.id"
    )


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    # Lower-cased; unique across companies because it is the CalDAV login.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    groups: Mapped[list[Group]] = relationship(
        secondary="group_members", back_populates="members", order_by="Group.id"
    )


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Appointment(Base):
    """A booking. `ical` keeps the last text a CalDAV client wrote (for what
    the booking has no column for); `feed_*` are the rendered VEVENT texts
    for each feed privacy level, refreshed whenever the row changes."""

    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("company_id", "external_id"),
        Index("ix_appointments_staff_range", "staff_id", "first_occurrence", "last_occurrence"),
        Index("ix_appointments_company_updated", "company_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(255), unique=True)
    href: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(200))
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    start_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    start_date: Mapped[dt.date | None] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date)  # exclusive
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    service_name: Mapped[str] = mapped_column(String(200), default="")
    customer_name: Mapped[str] = mapped_column(String(200), default="")
    customer_email: Mapped[str] = mapped_column(String(254), default="")
    customer_phone: Mapped[str] = mapped_column(String(64), default="")
    location: Mapped[str] = mapped_column(String(500), default="")
    meeting_url: Mapped[str] = mapped_column(String(1000), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    etag: Mapped[str] = mapped_column(String(64))
    # UTC span used for time-range queries (all-day events widened by ±14 h).
    first_occurrence: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_occurrence: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ical: Mapped[str | None] = mapped_column(Text)
    feed_full: Mapped[str | None] = mapped_column(Text)
    feed_limited: Mapped[str | None] = mapped_column(Text)
    feed_busy: Mapped[str | None] = mapped_column(Text)
    last_source: Mapped[str] = mapped_column(String(16), default="api")
    last_actor: Mapped[str] = mapped_column(String(254), default="")
    # The CalDAV item text (row + client-only data of `ical`), rendered at
    # write time for the ETag it was rendered for; `dav_hidden` is set when
    # staff deleted the (then cancelled) appointment from their calendar.
    dav_text: Mapped[str | None] = mapped_column(Text)
    dav_etag: Mapped[str | None] = mapped_column(String(64))
    dav_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    staff: Mapped[Staff] = relationship()


class BlockedTime(Base):
    """An event a staff member created in their own calendar: busy time.

    `ical` is the full VCALENDAR text the client wrote (alarms, X- props,
    RRULE, overrides all kept); the other columns are derived from it."""

    __tablename__ = "blocked_times"
    __table_args__ = (
        UniqueConstraint("staff_id", "href"),
        UniqueConstraint("staff_id", "uid"),
        Index("ix_blocked_times_staff_range", "staff_id", "first_occurrence", "last_occurrence"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(255))
    href: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(String(500), default="")
    ical: Mapped[str] = mapped_column(Text)
    recurring: Mapped[bool] = mapped_column(Boolean, default=False)
    first_occurrence: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_occurrence: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    feed_busy: Mapped[str | None] = mapped_column(Text)
    # Occurrences are indexed in `busy_intervals` from/up to these instants;
    # None: all of them. Time-range queries outside parse `ical` instead.
    indexed_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    indexed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    etag: Mapped[str] = mapped_column(String(64))
    last_source: Mapped[str] = mapped_column(String(16), default="caldav")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class BusyInterval(Base):
    """One occurrence of a blocked time in UTC (floating and all-day times
    read as UTC, as CalDAV time-range filters do, RFC 4791 §9.9): the index
    that answers a calendar-query without parsing any iCalendar text."""

    __tablename__ = "busy_intervals"
    __table_args__ = (Index("ix_busy_intervals_staff_range", "staff_id", "start_at", "end_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    blocked_time_id: Mapped[int] = mapped_column(
        ForeignKey("blocked_times.id", ondelete="CASCADE"), index=True
    )
    staff_id: Mapped[int] = mapped_column(BigInteger)
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class DavProperty(Base):
    """WebDAV properties a client set on a collection (PROPPATCH: colour,
    display name), keyed by the collection path."""

    __tablename__ = "dav_properties"

    path: Mapped[str] = mapped_column(String(400), primary_key=True)
    props: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ChangeEntry(Base):
    """The change log (DESIGN rule 2): one row per mutation, written in the
    same transaction. `seq` is the per-company cursor of the change feed."""

    __tablename__ = "change_log"
    __table_args__ = (
        UniqueConstraint("company_id", "seq"),
        Index("ix_change_log_entity", "entity", "entity_id"),
        Index("ix_change_log_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))  # e.g. appointment.rescheduled
    entity: Mapped[str] = mapped_column(String(32))  # appointment, blocked_time, staff, ...
    entity_id: Mapped[int] = mapped_column(BigInteger)
    staff_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    source: Mapped[str] = mapped_column(String(16))  # api | caldav | admin | sync
    actor: Mapped[str] = mapped_column(String(254), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """A company-scoped API key. Only its SHA-256 is stored: the secret part
    has 256 random bits, so a slow hash would add cost and no safety."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class FeedLink(Base):
    """A secret ICS subscription URL for a staff member, a group or the company."""

    __tablename__ = "feed_links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(16))  # staff | group | company
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    privacy: Mapped[str] = mapped_column(String(16))  # full | limited | busy
    label: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    # Random per token; the token is HMAC(server secret, id + salt), so the
    # URL can be shown again, yet a database dump alone reveals none.
    token_salt: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_fetched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AppPassword(Base):
    """A CalDAV app password for a staff member (slow hash only)."""

    __tablename__ = "app_passwords"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LoginFailure(Base):
    """Failed logins (CalDAV, admin) for rate limiting across workers."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(300))  # "user:<email>" or "addr:<ip>"
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CalendarLink(Base):
    """An external calendar a staff member linked (issue 6): an ICS URL or a
    CalDAV account's calendar, read for busy time ("check for conflicts")
    and/or written with their appointments ("add appointments to").

    Secrets (the ICS URL, which is itself a credential, and the CalDAV
    password) live only in `credentials`, Fernet-encrypted with the key of
    `[sync] credentials_key`. The poller's claim (`claimed_by/_until`) keeps
    two workers from polling one link at once."""

    __tablename__ = "calendar_links"
    __table_args__ = (Index("ix_calendar_links_due", "enabled", "next_poll_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # ics | caldav
    label: Mapped[str] = mapped_column(String(200), default="")
    url_display: Mapped[str] = mapped_column(String(300), default="")  # no secret in it
    server_url: Mapped[str] = mapped_column(String(1000), default="")  # caldav only
    username: Mapped[str] = mapped_column(String(254), default="")  # caldav only
    calendar_url: Mapped[str] = mapped_column(String(1000), default="")  # caldav only
    credentials: Mapped[str] = mapped_column(Text)  # Fernet token of JSON
    check_conflicts: Mapped[bool] = mapped_column(Boolean, default=True)
    add_appointments: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    interval_seconds: Mapped[int] = mapped_column(Integer, default=300)
    # pending (never read) | ok | failing | auth_failed
    health: Mapped[str] = mapped_column(String(16), default="pending")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_polled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    incident_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_poll_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str] = mapped_column(String(64), default="")
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Change detection: HTTP validators (ICS), sync-token/ctag (CalDAV).
    http_etag: Mapped[str] = mapped_column(String(255), default="")
    http_last_modified: Mapped[str] = mapped_column(String(64), default="")
    sync_token: Mapped[str] = mapped_column(String(500), default="")
    ctag: Mapped[str] = mapped_column(String(255), default="")
    # Busy intervals were computed up to here; the window slides daily.
    window_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    busy_count: Mapped[int] = mapped_column(Integer, default=0)
    # Change-log position up to which appointments were written out.
    push_cursor: Mapped[int | None] = mapped_column(BigInteger)
    push_error: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExternalBusy(Base):
    """One busy interval read from a calendar link (UTC): the last good
    snapshot, replaced by the next good read (whole, or per CalDAV object
    `href` after an RFC 6578 sync), never by a failure."""

    __tablename__ = "external_busy"
    __table_args__ = (Index("ix_external_busy_staff_range", "staff_id", "start_at", "end_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    link_id: Mapped[int] = mapped_column(
        ForeignKey("calendar_links.id", ondelete="CASCADE"), index=True
    )
    staff_id: Mapped[int] = mapped_column(BigInteger)
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    href: Mapped[str] = mapped_column(String(1000), default="")  # CalDAV object; "" for ICS


class CalendarPush(Base):
    """An appointment written to an "add appointments to" calendar link:
    where it went and which version, so a retry never duplicates it."""

    __tablename__ = "calendar_pushes"

    link_id: Mapped[int] = mapped_column(
        ForeignKey("calendar_links.id", ondelete="CASCADE"), primary_key=True
    )
    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    href: Mapped[str] = mapped_column(String(1000))
    version: Mapped[int] = mapped_column(Integer)
    remote_etag: Mapped[str] = mapped_column(String(255), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEndpoint(Base):
    """A company's webhook receiver. Its signing secret is never stored: it
    is HMAC(server secret, id + salt), so a database dump alone reveals none.
    `enqueued_seq` is how far the change log has been turned into deliveries;
    `lease_*` is the claim of the worker delivering to it now (at most one,
    so deliveries go out in order); `next_attempt_at` is the backoff."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_salt: Mapped[str] = mapped_column(String(64))
    previous_secret_salt: Mapped[str | None] = mapped_column(String(64))
    previous_secret_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str] = mapped_column(String(500), default="")
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    enqueued_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One message to one endpoint (an event, a replayed event or a test),
    with its exact body; sent in `id` order per endpoint until a 2xx."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint_status", "endpoint_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    company_id: Mapped[int] = mapped_column(BigInteger, index=True)
    message_id: Mapped[str] = mapped_column(String(64))  # the webhook-id header
    event_type: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16), default="event")  # event | replay | test
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | succeeded
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WebhookAttempt(Base):
    """One HTTP request of a delivery: when, how long, what came back."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(String(500), default="")
    response_excerpt: Mapped[str] = mapped_column(String(500), default="")


class CompanyAlerts(Base):
    """Where a company wants calendar-link incident notices: its own Slack
    incoming webhook (a secret URL, Fernet-encrypted like link credentials)
    and whether its admins get the alert emails too."""

    __tablename__ = "company_alerts"

    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True
    )
    slack_webhook: Mapped[str] = mapped_column(Text, default="")  # encrypted, "" = none
    slack_display: Mapped[str] = mapped_column(String(300), default="")
    email_admins: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
