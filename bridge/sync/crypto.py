"""Encryption at rest of calendar-link credentials (Fernet: AES-128-CBC +
HMAC-SHA256, from the `cryptography` package).

The key comes from `[sync] credentials_key` (comma-separated Fernet keys,
newest first, so keys can be rotated: old tokens still decrypt, new ones use
the first key), or is derived from the server secret when that is empty.
Nothing else in calbridge sees a credential in clear; nothing logs one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bridge.config import Settings
from bridge.errors import ConfigError


class CredentialError(Exception):
    """Stored credentials cannot be decrypted (the key changed)."""


def _fernet(settings: Settings) -> MultiFernet:
    raw = settings.sync.credentials_key.strip()
    if raw:
        keys = []
        for part in raw.split(","):
            try:
                keys.append(Fernet(part.strip().encode()))
            except (ValueError, TypeError):
                raise ConfigError(
                    "[sync] credentials_key: each key must be a Fernet key "
                    "(32 url-safe base64-encoded bytes)") from None
        return MultiFernet(keys)
    derived = hmac.new(settings.secret(), b"calbridge:calendar-credentials",
                       hashlib.sha256).digest()
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])


def encrypt(settings: Settings, data: dict[str, Any]) -> str:
    return _fernet(settings).encrypt(json.dumps(data).encode()).decode()


def decrypt(settings: Settings, token: str) -> dict[str, Any]:
    try:
        value = json.loads(_fernet(settings).decrypt(token.encode()))
    except InvalidToken:
        raise CredentialError("stored credentials cannot be decrypted with the configured key "
                              "([sync] credentials_key changed?)") from None
    assert isinstance(value, dict)
    return value
