"""The words of a calendar-link incident notice, and sending it: one email
to the staff member (admins of the company in Cc) and, when configured, one
Slack message. The Slack URL is the company's own (PATCH /api/v1/calendar-policy) or the
server's `[alerts] slack_webhook_url`. Called once per state change (see
bridge.sync.service), so
a link that stays broken for a week sends one notice, not thousands.

A notice that cannot be delivered is logged and dropped: the change-log
entry (`calendar_link.failed/recovered`) is the durable record, and
webhooks carry it.
"""

from __future__ import annotations

import logging

import aiohttp

from bridge.config import Settings
from bridge.notify.email import EmailError, send_email
from bridge.notify.slack import SlackError, post_slack
from bridge.sync.service import Notice

log = logging.getLogger("calbridge.sync")


def subject(n: Notice) -> str:
    name = n.label or n.url
    if n.event == "calendar_link.failed":
        why = "password refused" if n.health == "auth_failed" else "cannot be read"
        return f"Calendar connection broken: {name} ({why})"
    return f"Calendar connection restored: {name}"


def body(n: Notice) -> str:
    name = n.label or n.url
    when = n.at.strftime("%Y-%m-%d %H:%M UTC")
    if n.event == "calendar_link.failed":
        lines = [
            f"Hello {n.staff_name},",
            "",
            f"calbridge can no longer read the calendar \"{name}\" ({n.url}) linked for "
            f"{n.staff_name} at {n.company_name}, since {when}.",
            f"Reason: {n.error}",
            "",
        ]
        if n.health == "auth_failed":
            lines.append("The calendar server refused the username or password. If the "
                         "password was changed, create a new app-specific password and update "
                         "the calendar link.")
        else:
            lines.append("calbridge keeps trying. Until it succeeds, availability uses the "
                         "events it read last; depending on your company's policy, booking "
                         "for this person may be paused.")
        lines += ["", "You will get one more message when the connection works again."]
    else:
        lines = [
            f"Hello {n.staff_name},",
            "",
            f"The calendar \"{name}\" ({n.url}) linked for {n.staff_name} at {n.company_name} "
            f"can be read again since {when}. Availability counts it again.",
        ]
    return "\n".join(lines) + "\n"


def slack_text(n: Notice) -> str:
    icon = ":warning:" if n.event == "calendar_link.failed" else ":white_check_mark:"
    text = f"{icon} {subject(n)} — {n.staff_name} <{n.staff_email}>, {n.company_name}"
    if n.error:
        text += f"\n> {n.error}"
    return text


async def send(settings: Settings, http: aiohttp.ClientSession, n: Notice) -> None:
    if settings.alerts.email:
        try:
            await send_email(settings.smtp, [n.staff_email], subject(n), body(n),
                             cc=[a for a in n.admin_emails if a != n.staff_email])
        except EmailError as exc:
            log.warning("calendar link %d: alert email not sent: %s", n.link_id, exc)
    if n.slack_url:
        try:
            await post_slack(http, n.slack_url, slack_text(n), settings.alerts.timeout_seconds)
        except SlackError as exc:
            log.warning("calendar link %d: Slack alert not sent: %s", n.link_id, exc)
