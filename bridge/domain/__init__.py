"""Pure rules and iCalendar mapping: imports stdlib, icalendar and
recurring-ical-events only (never aiohttp, SQLAlchemy or Radicale)."""
