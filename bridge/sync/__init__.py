"""External calendars (issue 6): calendar links, the poller that reads their
busy time, and the writer that puts confirmed appointments into them.
Importing the package adds the calendar-link hints to `bridge.demo.DEMO_EXTRAS`."""

from bridge.demo import DEMO_EXTRAS
from bridge.sync.demo import demo_calendar_links

if demo_calendar_links not in DEMO_EXTRAS:
    DEMO_EXTRAS.append(demo_calendar_links)
