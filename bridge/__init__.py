"""calbridge: iCalendar/CalDAV feed and bridge server for booking systems."""

__version__ = "0.1.0"
