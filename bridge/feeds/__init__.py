"""ICS subscription feeds (issue 3): feed links, cached VEVENT texts, the feed route.

Importing this package registers the appointment renderer in
`bridge.db.repo.APPOINTMENT_RENDERERS`, so every appointment write (API,
CalDAV, CLI, demo) refreshes the VEVENT texts feeds are assembled from, and adds the demo's
feed links to `bridge.demo.DEMO_EXTRAS`.
"""

from __future__ import annotations

from bridge.db.repo import APPOINTMENT_RENDERERS
from bridge.demo import DEMO_EXTRAS
from bridge.feeds.demo import demo_feeds
from bridge.feeds.service import render_appointment_texts

if render_appointment_texts not in APPOINTMENT_RENDERERS:
    APPOINTMENT_RENDERERS.append(render_appointment_texts)
if demo_feeds not in DEMO_EXTRAS:
    DEMO_EXTRAS.append(demo_feeds)
