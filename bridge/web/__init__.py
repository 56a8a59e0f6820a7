"""The admin web console: server-rendered pages for a company's admins.

`routes` (aiohttp handlers, the console sub-application), `sessions`
(signed cookies and CSRF tokens, pure), `accounts` (admin users, sign-in
with rate limiting: units of work), `describe` (change-log entries in human
words), `invite` (the invitation email, sent by `bridge.notify.email`), `cli` and `demo`
(the `calbridge admin` command, the demo admin). Feed links and app
passwords are managed by calling their own services, never re-implemented.
"""
