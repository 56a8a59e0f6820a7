"""The invitation email: its default text, and the message with both parts.

An admin invites a staff member to subscribe to their appointments (the
ICS feed, with "add by URL" links for Apple, Google and Outlook) and to
edit them over CalDAV. The console shows `default_text(...)` in an editable
form; whatever the admin sends becomes the plain-text part, and the HTML
part is made from that same text (escaped, links made clickable), so the
two never disagree. Message format: RFC 5322 with a multipart/alternative
body (RFC 2046 §5.1.4), plain text first. Pure: no SMTP
(`bridge.notify.email` sends it).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from bridge.errors import Invalid

_URL = re.compile(r"(https?://[^\s<>\"]+|webcal://[^\s<>\"]+)")
MAX_SUBJECT = 200
MAX_BODY = 20_000


@dataclass(frozen=True)
class InviteContext:
    company: str
    staff_name: str
    staff_email: str
    feed_https: str | None
    feed_webcal: str | None
    feed_google: str | None
    feed_outlook: str | None
    caldav_url: str
    caldav_username: str


def default_subject(ctx: InviteContext) -> str:
    return f"Your {ctx.company} appointments in your own calendar"


def default_text(ctx: InviteContext) -> str:
    first = ctx.staff_name.split()[0] if ctx.staff_name.split() else ctx.staff_name
    lines = [
        f"Hello {first},",
        "",
        f"{ctx.company} now puts your appointments into the calendar you already use.",
        "",
    ]
    if ctx.feed_https:
        lines += [
            "1. Subscribe to your appointments (read-only, updates by itself)",
            "",
            f"   Apple Calendar (Mac, iPhone, iPad): {ctx.feed_webcal}",
            f"   Google Calendar: {ctx.feed_google}",
            f"   Outlook / Office 365: {ctx.feed_outlook}",
            f"   Any other calendar app, \"add calendar from URL\": {ctx.feed_https}",
            "",
            "   Keep this link to yourself: anyone who has it can see your appointments.",
            "",
        ]
    lines += [
        "2. Or edit your appointments from your calendar (CalDAV)",
        "",
        f"   Server: {ctx.caldav_url}",
        f"   Username: {ctx.caldav_username}",
        "   Password: an app password your admin gives you (never your own password).",
        "",
        "   Apple Calendar on a Mac: Calendar > Settings > Accounts > + > Other CalDAV account,"
        " account type Manual.",
        "   iPhone or iPad: Settings > Calendar > Accounts > Add Account > Other >"
        " Add CalDAV Account.",
        "   Thunderbird: New Calendar > On the Network, enter the server and your username.",
        "   Android: install DAVx5, choose \"Login with URL and user name\".",
        "   Outlook has no CalDAV: use the Outlook subscribe link above.",
        "",
        "Moving or cancelling an appointment in your calendar updates the booking,",
        "and the customer is told.",
        "",
        f"— {ctx.company}",
    ]
    return "\n".join(lines)


def check(subject: str, body: str) -> tuple[str, str]:
    """The subject and body an admin submitted, or Invalid naming the field."""
    subject = " ".join(subject.split())
    if not subject:
        raise Invalid("Write a subject.", field="subject")
    if len(subject) > MAX_SUBJECT:
        raise Invalid(f"The subject is longer than {MAX_SUBJECT} characters.", field="subject")
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise Invalid("Write a message.", field="body")
    if len(body) > MAX_BODY:
        raise Invalid(f"The message is longer than {MAX_BODY} characters.", field="body")
    return subject, body + "\n"


def to_html(text: str) -> str:
    """The HTML part: the same words, escaped, paragraphs kept, links clickable."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        escaped = html.escape(block)
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        paragraphs.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return ("<!DOCTYPE html>\n<html><body style=\"font-family:sans-serif;line-height:1.45\">\n"
            + "\n".join(paragraphs) + "\n</body></html>\n")


def build_message(sender: str, to_name: str, to_email: str, subject: str,
                  body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = formataddr((to_name, to_email))
    msg["Subject"] = subject
    domain = sender.rsplit("@", 1)[-1].strip("> ") or "localhost"
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(body)
    msg.add_alternative(to_html(body), subtype="html")
    return msg
