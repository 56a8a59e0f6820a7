"""Sending one email through the SMTP server of `[smtp]` (invitations only).

Written for the console's invitation because the shared email notifier
(`bridge.notify.email`) was not there yet; it should move there. smtplib
is blocking, so `send` runs it in a thread. Errors come back as
`MailError` with a message an admin can act on; passwords are never shown.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from bridge.config import SmtpSettings
from bridge.errors import BridgeError


class MailError(BridgeError):
    title = "Email not sent"


def _send(cfg: SmtpSettings, msg: EmailMessage) -> None:
    context = ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if cfg.ssl:
            client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_seconds,
                                      context=context)
        else:
            client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
        with client:
            if cfg.starttls and not cfg.ssl:
                client.starttls(context=context)
            if cfg.username:
                client.login(cfg.username, cfg.password)
            client.send_message(msg)
    except smtplib.SMTPAuthenticationError:
        raise MailError("the SMTP server refused the login in [smtp]") from None
    except smtplib.SMTPRecipientsRefused:
        raise MailError("the SMTP server refused the recipient address") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(
            f"could not send through {cfg.host}:{cfg.port} ({type(exc).__name__}); "
            "check [smtp] in the configuration"
        ) from None


async def send(cfg: SmtpSettings, msg: EmailMessage) -> None:
    await asyncio.to_thread(_send, cfg, msg)
