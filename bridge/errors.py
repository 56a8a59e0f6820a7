"""The error root of calbridge.

Domain and service code raise these; each protocol edge (the API's error
middleware, the Radicale plugin boundary, the CLI) turns them into its own
status codes in one place. Nothing here knows about HTTP.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error calbridge raises on purpose."""

    title = "Error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConfigError(BridgeError):
    title = "Invalid configuration"


class NotFound(BridgeError):
    title = "Not found"


class Invalid(BridgeError):
    """Input that breaks a rule: wrong type, end before start, unknown zone."""

    title = "Invalid input"


class InvalidCalendarData(Invalid):
    title = "Invalid calendar data"

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}", field=field)
        self.line = line


class Conflict(BridgeError):
    """The request clashes with existing data (a duplicate external_id)."""

    title = "Conflict"


class PreconditionFailed(BridgeError):
    """A stale If-Match / If-None-Match: nothing was written."""

    title = "Precondition failed"


class Forbidden(BridgeError):
    title = "Forbidden"


class Unauthorized(BridgeError):
    title = "Unauthorized"


class Gone(BridgeError):
    title = "Gone"


class SyncTokenInvalid(BridgeError):
    title = "Invalid sync token"


class TooLarge(BridgeError):
    title = "Payload too large"
