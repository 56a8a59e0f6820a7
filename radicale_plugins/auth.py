"""Radicale auth plugin: a staff member's email and one of their app passwords.

Loaded by Radicale as `[auth] type = radicale_plugins.auth` (class `Auth`).
The check itself (hash, rate limit per user and per address, last-used
time) is `bridge.dav.passwords.login`; this class only adapts it. The
user name Radicale sees is the lower-cased email: it names the principal
`/<email>/`.
"""

from __future__ import annotations

from typing import Any

from radicale import auth

from bridge.dav import passwords
from radicale_plugins.backend import backend_for


class Auth(auth.BaseAuth):  # type: ignore[misc]
    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)
        self._backend = backend_for(configuration)

    def _login_ext(self, login: str, password: str, context: Any) -> str:
        addr = str(getattr(context, "remote_addr", "") or "")
        backend = self._backend
        result = passwords.login(backend.db, login, password, addr, backend.settings.caldav,
                                 backend.logins)
        return result.email if result is not None else ""

    def _login(self, login: str, password: str) -> str:
        return self._login_ext(login, password, None)
