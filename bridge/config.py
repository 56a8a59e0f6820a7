"""Settings: one schema drives the TOML file, the environment and validation.

Every section is a frozen dataclass below; every field is a key. A value comes
from (lowest to highest): the defaults here, the config file
(`config/calbridge.toml` unless `--config FILE`), then `CALBRIDGE_<SECTION>_<KEY>`
environment variables. Unknown sections or keys and bad values raise
`ConfigError` naming the key and where it came from. This module reads no
argv; `bridge.__main__` passes the path and the environment in.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError

DEFAULT_CONFIG = Path("config/calbridge.toml")


def _meta(help: str, *, min: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    return {"help": help, "min": min, "choices": choices}


@dataclass(frozen=True)
class ServerSettings:
    host: str = field(default="127.0.0.1", metadata=_meta("Address to bind."))
    port: int = field(default=8080, metadata=_meta("TCP port.", min=0))
    workers: int = field(default=1, metadata=_meta("Worker processes sharing the port.", min=1))
    public_url: str = field(
        default="",
        metadata=_meta("Base URL in links (feed URLs, invitations); empty: http://host:port."),
    )
    trust_proxy: bool = field(
        default=False,
        metadata=_meta("Honour X-Forwarded-Proto/Host (only behind a proxy you run)."),
    )
    max_body_bytes: int = field(
        default=1_048_576, metadata=_meta("Largest request body accepted (413 above).", min=1024)
    )
    access_log: bool = field(default=True, metadata=_meta("Write a JSON access log line per request."))
    access_log_flush_seconds: float = field(
        default=1.0,
        metadata=_meta("Access log lines are written in batches this often (0: at once).", min=0),
    )


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(
        default="sqlite:///var/calbridge.db",
        metadata=_meta("sqlite:///path or postgresql://user@host:port/db."),
    )
    busy_timeout_ms: int = field(
        default=10_000, metadata=_meta("SQLite busy timeout in milliseconds.", min=0)
    )
    pool_size: int = field(default=10, metadata=_meta("PostgreSQL connection pool size.", min=1))
    echo: bool = field(default=False, metadata=_meta("Log every SQL statement."))


@dataclass(frozen=True)
class SecuritySettings:
    secret_key: str = field(
        default="",
        metadata=_meta(
            "Server secret for deriving feed tokens and signing cookies; "
            "empty: read (or create) secret_key_file."
        ),
    )
    secret_key_file: str = field(
        default="var/secret.key", metadata=_meta("File holding the server secret.")
    )


@dataclass(frozen=True)
class FeedSettings:
    refresh_minutes: int = field(
        default=15, metadata=_meta("REFRESH-INTERVAL and X-PUBLISHED-TTL of feeds.", min=1)
    )
    window_days_back: int = field(default=60, metadata=_meta("Feed covers this many days back.", min=0))
    window_days_ahead: int = field(
        default=400, metadata=_meta("Feed covers this many days ahead.", min=1)
    )
    warn_bytes: int = field(
        default=800_000, metadata=_meta("Log a warning when a feed is larger than this.", min=1)
    )


@dataclass(frozen=True)
class CaldavSettings:
    max_body_bytes: int = field(
        default=262_144, metadata=_meta("Largest calendar object a client may PUT.", min=1024)
    )
    max_occurrences: int = field(
        default=5000, metadata=_meta("Cap on recurrence expansion per event.", min=1)
    )
    login_attempts: int = field(
        default=10, metadata=_meta("Failed logins allowed per user and per address.", min=1)
    )
    login_window_seconds: int = field(
        default=900, metadata=_meta("Window for counting failed logins.", min=1)
    )


@dataclass(frozen=True)
class ChangesSettings:
    retention_days: int = field(
        default=90, metadata=_meta("Change-log entries older than this are purged.", min=1)
    )
    max_wait_seconds: int = field(
        default=30, metadata=_meta("Upper bound of ?wait= on the change feed.", min=0)
    )
    poll_ms: int = field(
        default=200,
        metadata=_meta("How often a long poll and the webhook worker look at the database.", min=10),
    )


@dataclass(frozen=True)
class WebhookSettings:
    worker: bool = field(default=True, metadata=_meta("Run the delivery worker in each server process."))
    timeout_seconds: float = field(
        default=10.0, metadata=_meta("Total time allowed for one delivery request.", min=0.1)
    )
    max_response_bytes: int = field(
        default=65_536, metadata=_meta("Bytes of a receiver's response read (the rest is dropped).", min=0)
    )
    retry_base_seconds: float = field(
        default=5.0, metadata=_meta("First retry delay; doubles per attempt, with jitter.", min=0.01)
    )
    retry_max_seconds: float = field(
        default=3600.0, metadata=_meta("Longest delay between two attempts.", min=0.01)
    )
    disable_after_seconds: float = field(
        default=259_200.0,
        metadata=_meta("An endpoint failing for this long is disabled (default 3 days).", min=0),
    )
    allow_networks: str = field(
        default="",
        metadata=_meta("Comma-separated CIDRs of private/loopback targets allowed (e.g. 127.0.0.1/32)."),
    )
    concurrency: int = field(
        default=8, metadata=_meta("Endpoints one worker delivers to at the same time.", min=1)
    )
    secret_grace_seconds: int = field(
        default=86_400,
        metadata=_meta("After a rotation, the old secret also signs for this long.", min=0),
    )


@dataclass(frozen=True)
class WebSettings:
    session_minutes: int = field(
        default=480, metadata=_meta("Admin console sessions expire after this many minutes.", min=1)
    )
    login_attempts: int = field(
        default=5, metadata=_meta("Failed admin sign-ins allowed per email and per address.", min=1)
    )
    login_window_seconds: int = field(
        default=900, metadata=_meta("Window for counting failed admin sign-ins.", min=1)
    )


@dataclass(frozen=True)
class SmtpSettings:
    host: str = field(default="127.0.0.1", metadata=_meta("SMTP server for invitations."))
    port: int = field(
        default=25, metadata=_meta("SMTP port (587 with starttls, 465 with ssl).", min=1)
    )
    username: str = field(default="", metadata=_meta("SMTP login; empty: no AUTH."))
    password: str = field(default="", metadata=_meta("SMTP password."))
    starttls: bool = field(default=False, metadata=_meta("Upgrade the connection with STARTTLS."))
    ssl: bool = field(default=False, metadata=_meta("Connect with implicit TLS (port 465)."))
    from_address: str = field(
        default="calbridge <calbridge@localhost>", metadata=_meta("From: of emails sent.")
    )
    timeout_seconds: int = field(default=20, metadata=_meta("SMTP timeout.", min=1))


@dataclass(frozen=True)
class SyncSettings:
    enabled: bool = field(
        default=True, metadata=_meta("Run the external-calendar poller inside the server.")
    )
    tick_seconds: float = field(
        default=5.0, metadata=_meta("How often the poller looks for due calendar links.", min=0.05)
    )
    default_interval_seconds: int = field(
        default=300, metadata=_meta("Poll interval of a new calendar link.", min=10)
    )
    min_interval_seconds: int = field(
        default=60, metadata=_meta("Shortest poll interval a link may ask for.", min=1)
    )
    jitter: float = field(
        default=0.1, metadata=_meta("Poll times are spread by ±this fraction of the interval.",
                                    min=0)
    )
    concurrency: int = field(
        default=8, metadata=_meta("Calendar links polled at once per worker.", min=1)
    )
    batch: int = field(default=100, metadata=_meta("Links claimed per poller tick.", min=1))
    lease_seconds: int = field(
        default=120, metadata=_meta("A claimed link is left to its worker this long.", min=5)
    )
    timeout_seconds: float = field(
        default=20.0, metadata=_meta("Timeout of one request to an external calendar.", min=0.1)
    )
    max_bytes: int = field(
        default=10_000_000, metadata=_meta("Largest external calendar read.", min=1024)
    )
    window_days_back: int = field(
        default=1, metadata=_meta("Busy times are kept from this many days back.", min=0)
    )
    window_days_ahead: int = field(
        default=180, metadata=_meta("Busy times are kept this many days ahead.", min=1)
    )
    max_occurrences: int = field(
        default=20_000, metadata=_meta("Cap on busy intervals kept per calendar link.", min=1)
    )
    failure_threshold: int = field(
        default=3, metadata=_meta("Consecutive errors before a link counts as failing.", min=1)
    )
    ignore_transparent: bool = field(
        default=True, metadata=_meta("Events marked TRANSP:TRANSPARENT are not busy time.")
    )
    ignore_cancelled: bool = field(
        default=True, metadata=_meta("Events with STATUS:CANCELLED are not busy time.")
    )
    ignore_tentative: bool = field(
        default=False, metadata=_meta("Events with STATUS:TENTATIVE are not busy time.")
    )
    credentials_key: str = field(
        default="",
        metadata=_meta("Fernet key(s), comma-separated, newest first, encrypting calendar "
                       "credentials; empty: derived from the server secret."),
    )
    allow_private_addresses: bool = field(
        default=False,
        metadata=_meta("Let calendar links reach loopback/private addresses (tests, intranets)."),
    )


@dataclass(frozen=True)
class AlertSettings:
    email: bool = field(
        default=True,
        metadata=_meta("Email the staff member and company admins when a calendar link breaks."),
    )
    slack_webhook_url: str = field(
        default="",
        metadata=_meta("Slack incoming-webhook URL for calendar-link alerts; empty: off."),
    )
    timeout_seconds: float = field(
        default=10.0, metadata=_meta("Timeout of one alert delivery.", min=0.1)
    )


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    caldav: CaldavSettings = field(default_factory=CaldavSettings)
    changes: ChangesSettings = field(default_factory=ChangesSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    web: WebSettings = field(default_factory=WebSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    source: str = "defaults"

    @property
    def base_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        return f"http://{self.server.host}:{self.server.port}"

    def secret(self) -> bytes:
        """The server secret; created in `secret_key_file` on first use."""
        if self.security.secret_key:
            return self.security.secret_key.encode()
        path = Path(self.security.secret_key_file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()

    def replace(self, **sections: Any) -> Settings:
        """A copy with some keys changed: `settings.replace(feeds={"refresh_minutes": 5})`."""
        changes: dict[str, Any] = {}
        for name, values in sections.items():
            current = getattr(self, name)
            changes[name] = dataclasses.replace(current, **values) if isinstance(values, dict) else values
        return dataclasses.replace(self, **changes)


SECTIONS: dict[str, type[Any]] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in fields(Settings)
    if f.name != "source"
}


def _coerce(section: str, key: str, raw: Any, ftype: str, where: str, meta: Mapping[str, Any]) -> Any:
    name = f"[{section}] {key}"
    value: Any
    if ftype == "bool":
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
            value = True
        elif isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
            value = False
        else:
            raise ConfigError(f"{name} in {where}: expected true or false, got {raw!r}")
    elif ftype == "int":
        if isinstance(raw, bool):
            raise ConfigError(f"{name} in {where}: expected an integer, got {raw!r}")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} in {where}: expected an integer, got {raw!r}") from None
    elif ftype == "float":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} in {where}: expected a number, got {raw!r}") from None
    else:
        if not isinstance(raw, str):
            raise ConfigError(f"{name} in {where}: expected a string, got {raw!r}")
        value = raw
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{name} in {where}: must be at least {meta['min']}, got {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{name} in {where}: must be one of {', '.join(meta['choices'])}")
    return value


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file (if any) and `CALBRIDGE_*` variables into Settings."""
    environ = os.environ if environ is None else environ
    data: dict[str, dict[str, tuple[Any, str]]] = {}
    source = "defaults"
    file_path = Path(path) if path is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None and not Path(path).exists():
        raise ConfigError(f"config file {path} does not exist")
    if file_path is not None:
        source = str(file_path)
        try:
            parsed = tomllib.loads(file_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: not valid TOML: {exc}") from None
        for section, values in parsed.items():
            if section not in SECTIONS:
                raise ConfigError(f"unknown section [{section}] in {file_path}")
            if not isinstance(values, dict):
                raise ConfigError(f"{section} in {file_path} must be a table")
            for key, value in values.items():
                data.setdefault(section, {})[key] = (value, str(file_path))
    for name, value in environ.items():
        if not name.startswith("CALBRIDGE_") or name in ("CALBRIDGE_CONFIG",):
            continue
        rest = name[len("CALBRIDGE_") :].lower()
        env_section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if env_section is None:
            raise ConfigError(f"unknown setting in environment variable {name}")
        key = rest[len(env_section) + 1 :]
        data.setdefault(env_section, {})[key] = (value, f"environment {name}")
    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, (raw, where) in data.get(section, {}).items():
            if key not in known:
                raise ConfigError(f"unknown key '{key}' in [{section}] in {where}")
            f = known[key]
            kwargs[key] = _coerce(section, key, raw, str(f.type), where, f.metadata)
        built[section] = cls(**kwargs)
    return Settings(**built, source=source)


def reference() -> str:
    """The config reference as Markdown, generated from the schema (kept in the README)."""
    lines = []
    for section, cls in SECTIONS.items():
        lines.append(f"`[{section}]`\n")
        lines.append("| key | default | env | meaning |")
        lines.append("|---|---|---|---|")
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else ""
            env = f"CALBRIDGE_{section.upper()}_{f.name.upper()}"
            lines.append(f"| `{f.name}` | `{default!r}` | `{env}` | {f.metadata.get('help', '')} |")
        lines.append("")
    return "\n".join(lines)
