"""CalDAV: Radicale with the plugins in `radicale_plugins`, mounted under /dav.

Importing this package registers the CalDAV renderer with
`repo.APPOINTMENT_RENDERERS`, so every appointment write (API, CLI, CalDAV)
stores the item text a CalDAV client will read, in the same transaction, and
adds the demo's CalDAV logins to `bridge.demo.DEMO_EXTRAS`. `routes` (the
only module here that imports Radicale or aiohttp) mounts the WSGI app;
`service` and `passwords` are the units of work.
"""

from __future__ import annotations

from bridge.dav.demo import demo_caldav
from bridge.dav.service import render_appointment
from bridge.db import repo
from bridge.demo import DEMO_EXTRAS

if render_appointment not in repo.APPOINTMENT_RENDERERS:
    repo.APPOINTMENT_RENDERERS.append(render_appointment)
if demo_caldav not in DEMO_EXTRAS:
    DEMO_EXTRAS.append(demo_caldav)
