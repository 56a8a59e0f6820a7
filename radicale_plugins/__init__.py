"""Radicale plugins that make the booking database the CalDAV storage.

`radicale_plugins.auth` (class Auth: staff email + app password),
`radicale_plugins.rights` (class Rights: own calendar read-write, own groups
read-only) and `radicale_plugins.storage` (class Storage/Collection: views over
database rows). calbridge mounts them under /dav; a stock Radicale loads them
with `[storage] type = radicale_plugins.storage` and `database_url = ...` in
the same section (see `backend.PLUGIN_CONFIG_SCHEMA`). They reach the
database only through `bridge.dav.service`, `bridge.dav.passwords` and
`bridge.db`, never through HTTP.
"""
