"""Slack incoming webhooks: POST `{"text": ...}` to the configured URL
(https://api.slack.com/messaging/webhooks). The URL is a secret: it is
never logged; errors name only its host."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp


class SlackError(Exception):
    """The webhook did not accept the message."""


async def post_slack(http: aiohttp.ClientSession, url: str, text: str,
                     timeout_s: float) -> None:
    host = urlsplit(url).hostname or "?"
    try:
        async with http.post(url, json={"text": text},
                             timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status >= 300:
                raise SlackError(f"Slack webhook at {host} answered HTTP {resp.status}")
    except TimeoutError:
        raise SlackError(f"Slack webhook at {host} did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise SlackError(f"cannot reach the Slack webhook at {host}: "
                         f"{type(exc).__name__}") from None
