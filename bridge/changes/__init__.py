"""The booking system's change feed: `service` (cursors, reading, retention,
waiting) and `routes` (GET /api/v1/changes)."""
