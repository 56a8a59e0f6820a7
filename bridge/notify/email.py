"""Sending email over SMTP (`[smtp]`): alert emails about calendar links,
and any other plain-text message a feature needs to send.

`smtplib` runs in a thread so the event loop never blocks on the network.
Credentials come only from the config and are never logged. RFC 5322
messages are built with `email.message.EmailMessage`.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from bridge.config import SmtpSettings


class EmailError(Exception):
    """The SMTP server could not be reached or refused the message."""


def build_message(smtp: SmtpSettings, to: Sequence[str], subject: str, body: str,
                  cc: Sequence[str] = ()) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = smtp.from_address
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="calbridge")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5
    msg.set_content(body)
    return msg


def send_message_sync(smtp: SmtpSettings, msg: EmailMessage) -> None:
    try:
        if smtp.ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout_seconds,
                context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
        with client:
            if smtp.starttls and not smtp.ssl:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, smtp.password)
            client.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise EmailError(f"cannot send email via {smtp.host}:{smtp.port}: "
                         f"{type(exc).__name__}") from None


async def send_email(smtp: SmtpSettings, to: Sequence[str], subject: str, body: str,
                     cc: Sequence[str] = ()) -> None:
    """Send one plain-text email; `EmailError` if the server fails."""
    if not to:
        return
    msg = build_message(smtp, to, subject, body, cc)
    await asyncio.to_thread(send_message_sync, smtp, msg)
