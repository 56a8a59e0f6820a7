"""Radicale storage plugin: the booking database *is* the CalDAV storage.

Loaded as `[storage] type = radicale_plugins.storage` (classes `Storage` and
`Collection`). No files: a collection is a view over rows (DESIGN rule 1).

    /                          root (no listing of principals)
    /<email>/                  a staff member's principal (calendar-home-set)
    /<email>/calendar/         appointments + blocked time, read-write
    /<email>/group-<slug>/     the group's appointments, read-only

Items are built from stored text and stored uid/ETag/time range, so Radicale
never re-parses what the database knows. What Radicale otherwise does in
O(n) is answered by SQL: `get_filtered` (time-range prefilter on indexed
first/last occurrence and busy intervals, RFC 4791 §9.9), `has_uid`, `etag`,
`sync` (RFC 6578 tokens from the change log). `acquire_lock` is one database
transaction (SQLite BEGIN IMMEDIATE for writers; on PostgreSQL the staff
row is locked FOR UPDATE), so a PUT's read-check-write is atomic across
threads and processes. Writes are the units of work in `bridge.dav.service`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from email.utils import format_datetime
from typing import Any

from radicale import item as radicale_item
from radicale import pathutils, storage
from radicale.item import filter as radicale_filter
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.dav import service
from bridge.db import repo
from bridge.db.models import Staff
from bridge.domain.caldav import merge_meta
from bridge.errors import BridgeError, Forbidden, SyncTokenInvalid
from radicale_plugins import backend as plugin_backend
from radicale_plugins.backend import Backend, backend_for

CALENDAR = "calendar"
GROUP_PREFIX = "group-"
# What a client may set on a calendar (PROPPATCH): how it looks, not what it holds.
CLIENT_PROPS = frozenset({"D:displayname", "ICAL:calendar-color", "ICAL:calendar-order",
                          "C:calendar-description"})
_local = threading.local()


class _Rollback(Exception):
    pass


def current_body() -> str | None:
    """The exact PUT body, when calbridge's mount handed it over (else None)."""
    body = getattr(_local, "body", None)
    return body if isinstance(body, str) else None


def set_body(body: str | None) -> None:
    _local.body = body
    _local.parsed = None


def _parse_ahead(settings: Any) -> None:
    """Check and index the PUT body before the write lock is taken: parsing
    and expanding a recurrence is the costliest part of a PUT, and writers
    queue on that lock. `upload` uses the result when the body is the same."""
    text = current_body()
    if text is None:
        return
    try:
        parsed: Any = service.parse_for_put(text, settings)
    except BridgeError as exc:
        parsed = exc
    _local.parsed = (text, parsed)


def _parsed_ahead(text: str) -> Any:
    """What `_parse_ahead` found for `text` (an object or a refusal), or None."""
    ahead = getattr(_local, "parsed", None)
    _local.parsed = None
    if ahead is not None and ahead[0] is text:
        return ahead[1]
    return None


class StoredItem(radicale_item.Item):  # type: ignore[misc]
    """An item from stored text and stored uid/ETag/time range: never parsed
    unless Radicale needs the vobject (a filter the index could not decide,
    `expand`). Skips `Item.__init__`'s path re-sanitising, which costs more
    than the rest of building a report of a few hundred items."""

    def __init__(self, collection: Collection, row: service.ItemRow) -> None:
        self._collection_path = collection.path
        self.collection = collection
        self.href = row.href
        self.last_modified = row.last_modified
        self._text = row.text
        self._vobject_item = None
        self._etag = f'"{row.etag}"'
        self._uid = row.uid
        self._name = "VCALENDAR"
        self._component_name = "VEVENT"
        self._time_range = None  # only BaseCollection.get_filtered needs it; ours is SQL


class Collection(storage.BaseCollection):  # type: ignore[misc]
    def __init__(self, store: Storage, path: str, scope: service.Scope | None = None,
                 title: str = "", user: str = "") -> None:
        self._store = store
        self._path = path
        self._scope = scope
        self._title = title
        self._user = user
        self._meta: dict[str, str] | None = None

    # -- identity and metadata ---------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    def _base_meta(self) -> dict[str, str]:
        if self._scope is None:
            return {}
        meta = {
            "tag": "VCALENDAR",
            "D:displayname": self._title,
            "C:supported-calendar-component-set": "VEVENT",
            "ICAL:calendar-color": "#2E7D32" if self._scope.writable else "#1565C0",
        }
        if self._scope.writable:
            meta["C:calendar-description"] = (
                "Your appointments and blocked time. Move or cancel appointments here; "
                "new events block your time.")
        else:
            meta["C:calendar-description"] = "Appointments of your group (read-only)."
        return meta

    def get_meta(self, key: str | None = None) -> Any:
        if self._meta is None:
            meta = self._base_meta()
            if self._scope is not None:
                with self._store.session() as s:
                    meta = merge_meta(meta, service.get_props(s, self._scope))
            self._meta = meta  # Radicale asks several times per request
        meta = self._meta
        if key is None:
            return meta
        return meta.get(key)

    def set_meta(self, props: Mapping[str, str]) -> None:
        if self._scope is None:
            plugin_backend.fail(Forbidden("this collection has no writable properties"))
        base = self._base_meta()
        cleaned = {k: v for k, v in props.items()
                   if k in CLIENT_PROPS and isinstance(v, str) and v != base.get(k)}
        if props.get("tag", "VCALENDAR") != "VCALENDAR":
            plugin_backend.fail(Forbidden("a calendar stays a calendar"))
        with self._store.session() as s:
            service.set_props(s, self._scope, cleaned)
        self._meta = None

    @property
    def last_modified(self) -> str:
        if self._scope is None:
            return format_datetime(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), usegmt=True)
        with self._store.session() as s:
            return format_datetime(service.last_modified(s, self._scope), usegmt=True)

    @property
    def etag(self) -> str:
        if self._scope is None:
            return '"root"'
        with self._store.session() as s:
            return f'"{service.collection_etag(s, self._scope)}"'

    # -- reading -----------------------------------------------------------------
    def _item(self, row: service.ItemRow) -> radicale_item.Item:
        return StoredItem(self, row)

    def get_multi(self, hrefs: Iterable[str]
                  ) -> Iterable[tuple[str, radicale_item.Item | None]]:
        wanted = list(hrefs)
        if self._scope is None:
            return [(h, None) for h in wanted]
        with self._store.session() as s:
            rows = service.items_by_href(s, self._scope, wanted,
                                         for_update=self._store.writing())
        return [(h, self._item(rows[h]) if h in rows else None) for h in wanted]

    def get_all(self) -> Iterable[radicale_item.Item]:
        if self._scope is None:
            return []
        with self._store.session() as s:
            rows = service.all_items(s, self._scope)
        return [self._item(r) for r in rows]

    def get_filtered(self, filters: Iterable[ET.Element]
                     ) -> Iterable[tuple[radicale_item.Item, bool]]:
        if self._scope is None:
            return []
        tag, start, end, simple = radicale_filter.simplify_prefilters(filters, "VCALENDAR")
        if tag is not None and tag != "VEVENT":
            return []
        lo = None if start <= radicale_filter.TIMESTAMP_MIN else dt.datetime.fromtimestamp(
            start, dt.UTC)
        hi = None if end >= radicale_filter.TIMESTAMP_MAX else dt.datetime.fromtimestamp(
            end, dt.UTC)
        with self._store.session() as s:
            rows = service.filtered_items(s, self._scope, lo, hi)
        return [(self._item(r), matched and simple) for r, matched in rows]

    def has_uid(self, uid: str) -> bool:
        if self._scope is None:
            return False
        with self._store.session() as s:
            return service.has_uid(s, self._scope, uid)

    def sync(self, old_token: str = "") -> tuple[str, Iterable[str]]:
        if self._scope is None:
            raise ValueError("not a calendar")
        with self._store.session() as s:
            try:
                token, hrefs = service.changes_since(s, self._scope, old_token)
            except SyncTokenInvalid as exc:
                raise ValueError(exc.message) from None
            if hrefs is None:
                hrefs = [r.href for r in service.all_items(s, self._scope)]
        return token, hrefs

    # -- writing -----------------------------------------------------------------
    def upload(self, href: str, item: radicale_item.Item
               ) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        if self._scope is None:
            plugin_backend.fail(Forbidden("events belong in a calendar collection"))
        text = current_body() or item.serialize()
        settings = self._store.backend.settings.caldav
        try:
            with self._store.session() as s:
                result = service.put_item(s, self._scope, self._store.actor(self._user), href,
                                          text, settings=settings, parsed=_parsed_ahead(text))
        except BridgeError as exc:
            plugin_backend.fail(exc)
        if not result.exact or result.refused:
            plugin_backend.drop_etag()
        return self._item(result.item), None

    def delete(self, href: str | None = None) -> None:
        if self._scope is None or href is None:
            plugin_backend.fail(Forbidden("calendars are managed by calbridge; "
                                          "they cannot be deleted"))
        try:
            with self._store.session() as s:
                service.delete_item(s, self._scope, self._store.actor(self._user), href)
        except BridgeError as exc:
            plugin_backend.fail(exc)


class Storage(storage.BaseStorage):  # type: ignore[misc]
    _collection_class = Collection

    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration.copy(plugin_backend.PLUGIN_CONFIG_SCHEMA)
                         if _needs_schema(configuration) else configuration)
        self.backend: Backend = backend_for(self.configuration)

    # -- transactions ---------------------------------------------------------------
    @contextlib.contextmanager
    def acquire_lock(self, mode: str, user: str = "", *args: Any, **kwargs: Any
                     ) -> Iterator[None]:
        plugin_backend.reset_outcome()
        write = mode == "w"
        db = self.backend.db
        if write and kwargs.get("request") == "PUT":
            _parse_ahead(self.backend.settings.caldav)
        try:
            with db.sync_session(write=write) as s:
                if write and user and not db.is_sqlite:
                    # FOR NO KEY UPDATE: serialises this user's CalDAV writers without
                    # blocking the foreign-key checks of booking-API writes (no deadlock).
                    s.execute(select(Staff.id).where(Staff.email == user)
                              .with_for_update(key_share=True))
                previous = (getattr(_local, "session", None), getattr(_local, "writing", False),
                            getattr(_local, "staff", None))
                _local.session, _local.writing, _local.staff = s, write, {}
                try:
                    yield
                finally:
                    _local.session, _local.writing, _local.staff = previous
                if plugin_backend.outcome().rollback:
                    raise _Rollback
        except _Rollback:
            pass

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """The transaction of the current lock, or a short read-only one."""
        current = getattr(_local, "session", None)
        if current is not None:
            yield current
            return
        with self.backend.db.sync_session() as s:
            yield s

    def writing(self) -> bool:
        return bool(getattr(_local, "writing", False))

    def actor(self, user: str) -> repo.Actor:
        return repo.Actor("caldav", user)

    # -- discovery ------------------------------------------------------------------
    def discover(self, path: str, depth: str = "0", child_context_manager: Any = None,
                 user_groups: Any = frozenset()) -> Iterator[Any]:
        sane = pathutils.strip_path(path)
        parts = sane.split("/") if sane else []
        if not parts:
            yield Collection(self, "")
            return
        if len(parts) > 3:
            return
        with self.session() as s:
            staff = self._staff(s, parts[0])
            if staff is None or staff.email != parts[0]:
                return
            coll = self._collection(s, staff, parts[1]) if len(parts) > 1 else None
        if len(parts) == 1:
            yield Collection(self, staff.email)
            if depth != "0":
                with self.session() as s:
                    children = self._children(s, staff)
                yield from children
            return
        if coll is None:
            return
        if len(parts) == 3:
            yield from (item for _, item in coll.get_multi([parts[2]]) if item is not None)
            return
        yield coll
        if depth != "0":
            yield from coll.get_all()

    def _staff(self, s: Session, email: str) -> Staff | None:
        """The active staff member (remembered for the rest of this lock)."""
        memo: dict[str, Staff | None] | None = getattr(_local, "staff", None)
        if memo is None:
            return service.active_staff(s, email)
        if email not in memo:
            memo[email] = service.active_staff(s, email)
        return memo[email]

    def _children(self, s: Session, staff: Staff) -> list[Collection]:
        found = [self._own_calendar(staff)]
        for group in service.staff_groups(s, staff):
            found.append(Collection(
                self, f"{staff.email}/{GROUP_PREFIX}{group.slug}",
                service.Scope("group", staff.company_id, staff.id, group.id),
                f"{group.name} (group)", staff.email))
        return found

    def _own_calendar(self, staff: Staff) -> Collection:
        return Collection(self, f"{staff.email}/{CALENDAR}",
                          service.Scope("calendar", staff.company_id, staff.id),
                          f"Appointments – {staff.name}", staff.email)

    def _collection(self, s: Session, staff: Staff, name: str) -> Collection | None:
        if name == CALENDAR:
            return self._own_calendar(staff)
        if name.startswith(GROUP_PREFIX):
            group = service.group_of(s, staff, name[len(GROUP_PREFIX):])
            if group is not None:
                return Collection(self, f"{staff.email}/{name}",
                                  service.Scope("group", staff.company_id, staff.id, group.id),
                                  f"{group.name} (group)", staff.email)
        return None

    # -- what this storage does not do -------------------------------------------------
    def create_collection(self, href: str, items: Any = None, props: Any = None) -> Any:
        plugin_backend.fail(Forbidden(
            "calbridge provides one calendar per staff member and one per group; "
            "new collections cannot be created"))

    def move(self, item: Any, to_collection: Any, to_href: str) -> None:
        plugin_backend.fail(Forbidden("events cannot be moved between calendars here"))

    def verify(self) -> bool:
        return True


def _needs_schema(configuration: Any) -> bool:
    try:
        configuration.get("storage", "database_url")
    except KeyError:
        return True
    return False
