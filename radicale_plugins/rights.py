"""Radicale rights plugin: who may read or write which collection.

Loaded as `[rights] type = radicale_plugins.rights` (class `Rights`).
Collections are `/<email>/` (the principal, readable by its owner),
`/<email>/calendar/` (read-write: appointments and blocked time) and
`/<email>/group-<slug>/` (read-only, only while the owner belongs to that
group of their company). Everything else, including any path of another
staff member or company, has no rights: Radicale answers 403.
"""

from __future__ import annotations

from typing import Any

from radicale import pathutils, rights

from bridge.dav import service
from radicale_plugins.backend import backend_for

CALENDAR = "calendar"
GROUP_PREFIX = "group-"


class Rights(rights.BaseRights):  # type: ignore[misc]
    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)
        self._backend = backend_for(configuration)

    def authorization(self, user: str, user_groups: set[str], path: str) -> str:
        if not user:
            return ""
        sane = pathutils.strip_path(path)
        if not sane:
            return "R"
        parts = sane.split("/")
        if parts[0] != user:
            return ""
        if len(parts) == 1:
            return "R"
        if len(parts) > 2:
            return ""
        if parts[1] == CALENDAR:
            return "rw"
        if parts[1].startswith(GROUP_PREFIX):
            with self._backend.db.sync_session() as s:
                staff = service.active_staff(s, user)
                if staff is not None and service.group_of(
                        s, staff, parts[1][len(GROUP_PREFIX):]) is not None:
                    return "r"
        return ""
