"""CalDAV: Radicale with the plugins in `radicale_plugins`, mounted under /dav.

Importing this package registers the CalDAV renderer with
`repo.APPOINTMENT_RENDERERS`, so every appointment write (API, CLI, CalDAV)
stores the item text a CalDAV client will read, in the same transaction.
`routes` (the only module here that imports Radicale or aiohttp) mounts the
WSGI app; `service` and `passwords` are the units of work.
"""

from __future__ import annotations

from bridge.dav.service import render_appointment
from bridge.db import repo

if render_appointment not in repo.APPOINTMENT_RENDERERS:
    repo.APPOINTMENT_RENDERERS.append(render_appointment)
