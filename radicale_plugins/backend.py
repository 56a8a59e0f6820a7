"""The plugins' shared state: which database and settings, and the status boundary.

`backend_for(configuration)` finds the `Database` and `Settings` of the
process: calbridge registers its own (`register`) before building the
Radicale app, so the plugins share its connection pool; a stock Radicale gets
a new one from `[storage] database_url` (and optionally `calbridge_config`,
a calbridge TOML file for the `[caldav]` limits).

The boundary: Radicale answers 400 for a `ValueError` from `upload` and 500
for anything else, so a plugin records the `BridgeError` it meant
(`fail`) and, where the PUT succeeded but stored something other than the
body, that the ETag must not be sent (`drop_etag`, RFC 4791 §5.3.4).
`bridge.dav` reads the record (`take_outcome`) after each request and
answers with the status chosen here (`status_for`) and a DAV:error body.
Under a stock Radicale the record is ignored and its own codes stand.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, NoReturn
from xml.sax.saxutils import escape

from bridge.config import Settings, load_settings
from bridge.dav.passwords import LoginCache
from bridge.db.engine import Database
from bridge.errors import (
    BridgeError,
    Conflict,
    Forbidden,
    Invalid,
    InvalidCalendarData,
    NotFound,
    PreconditionFailed,
    SyncTokenInvalid,
    TooLarge,
    Unauthorized,
)

PLUGIN_CONFIG_SCHEMA: dict[str, dict[str, dict[str, Any]]] = {
    "storage": {
        "database_url": {
            "value": "",
            "help": "calbridge database URL (sqlite:///path or postgresql://...)",
            "type": str,
        },
        "calbridge_config": {
            "value": "",
            "help": "calbridge TOML config for the [caldav] limits (optional)",
            "type": str,
        },
    },
}


@dataclass
class Backend:
    db: Database
    settings: Settings
    logins: LoginCache = field(default_factory=LoginCache)
    owned: bool = False  # the plugins opened this database (a stock Radicale)


_backends: dict[str, Backend] = {}
_lock = threading.Lock()


def register(settings: Settings, db: Database) -> Backend:
    """Make this process's database the one plugins with `database_url` use."""
    backend = Backend(db, settings)
    with _lock:
        _backends[settings.database.url] = backend
    return backend


def unregister(settings: Settings) -> None:
    with _lock:
        _backends.pop(settings.database.url, None)


def backend_for(configuration: Any) -> Backend:
    try:
        url = configuration.get("storage", "database_url")
    except KeyError:
        url = ""
    config_path = ""
    try:
        config_path = configuration.get("storage", "calbridge_config")
    except KeyError:
        pass
    with _lock:
        if url in _backends:
            return _backends[url]
        settings = load_settings(config_path or None, environ={})
        if url:
            settings = settings.replace(database={"url": url})
        backend = Backend(Database(settings.database), settings, owned=True)
        _backends[settings.database.url] = backend
        return backend


def forget(url: str) -> None:
    """Drop the backend of `url`, closing its connections if the plugins opened them."""
    with _lock:
        backend = _backends.pop(url, None)
    if backend is not None and backend.owned:
        backend.db.sync_engine.dispose()


# --- the status boundary ---------------------------------------------------------

@dataclass
class Outcome:
    error: BridgeError | None = None
    drop_etag: bool = False
    rollback: bool = False


_local = threading.local()


def outcome() -> Outcome:
    current = getattr(_local, "outcome", None)
    if current is None:
        current = Outcome()
        _local.outcome = current
    return current


def reset_outcome() -> None:
    _local.outcome = Outcome()


def take_outcome() -> Outcome:
    current = outcome()
    reset_outcome()
    return current


def fail(exc: BridgeError) -> NoReturn:
    """Record the error, roll the transaction back, and stop Radicale's handler."""
    record = outcome()
    record.error = exc
    record.rollback = True
    raise ValueError(exc.message) from exc


def drop_etag() -> None:
    outcome().drop_etag = True


# RFC 4791 §5.3.2.1 / RFC 4918 §16 preconditions named in the DAV:error body.
_PRECONDITIONS: list[tuple[type[BridgeError], int, str]] = [
    (SyncTokenInvalid, 403, "D:valid-sync-token"),
    (InvalidCalendarData, 400, "C:valid-calendar-data"),
    (Invalid, 400, "C:valid-calendar-data"),
    (PreconditionFailed, 412, ""),
    (NotFound, 404, ""),
    (Conflict, 409, "C:no-uid-conflict"),
    (TooLarge, 413, "C:max-resource-size"),
    (Unauthorized, 401, ""),
    (Forbidden, 403, "D:need-privileges"),
]


def status_for(exc: BridgeError) -> tuple[int, bytes]:
    """The HTTP status and DAV:error body for an error raised in a plugin."""
    status, element = 500, ""
    for cls, code, name in _PRECONDITIONS:
        if isinstance(exc, cls):
            status, element = code, name
            break
    if exc.field == "component":
        element = "C:supported-calendar-component"
    elif exc.field == "RRULE" and status == 400:
        element = "C:max-instances"
    elif exc.field in ("UID", "METHOD") and status == 400:
        element = "C:valid-calendar-object-resource"
    condition = f"<{element}/>" if element else ""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<D:error xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" '
        f'xmlns:CB="urn:calbridge:ns">{condition}'
        f"<CB:message>{escape(exc.message)}</CB:message></D:error>\n"
    )
    return status, body.encode()
