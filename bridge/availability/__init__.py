"""Availability: busy time merged from appointments, blocked time and
external calendars, and the free slots left (issue 6)."""
