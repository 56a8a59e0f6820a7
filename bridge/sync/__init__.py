"""External calendars (issue 6): calendar links, the poller that reads their
busy time, and the writer that puts confirmed appointments into them."""
