"""Every `web.AppKey` of the application, in one place."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.accesslog import AccessLog
from bridge.config import Settings
from bridge.db.engine import Database
from bridge.feeds.serve import FeedServer
from bridge.metrics import Metrics
from bridge.sync.scheduler import Syncer

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
METRICS = web.AppKey("metrics", Metrics)
SECRET = web.AppKey("secret", bytes)
SYNCER = web.AppKey("calendar_syncer", Syncer)
FEEDS = web.AppKey("feeds", FeedServer)
# Set when the server shuts down: long polls on the change feed answer at once.
CHANGES_STOPPING = web.AppKey("changes_stopping", asyncio.Event)
ACCESS_LOG = web.AppKey("access_log", AccessLog)
