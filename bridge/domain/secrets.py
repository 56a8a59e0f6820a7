"""Secrets: generation, slow password hashes, token hashes, constant-time checks.

API keys and feed tokens carry 256 random bits, so a fast keyed hash
(HMAC-SHA256 with the server secret) is safe for them and keeps a look-up to
one indexed query; passwords people choose or type (app passwords, admin
passwords) get scrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def random_token(nbytes: int = 32) -> str:
    """URL-safe random text with `nbytes` of entropy (no padding)."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str, secret: bytes = b"") -> str:
    """Keyed SHA-256 of a high-entropy token, hex; a dump of it reveals no token."""
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P
    )
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt_b64}${digest_b64}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if algo != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def new_api_key() -> tuple[str, str]:
    """(prefix, full key). The prefix finds the row; the whole key is hashed."""
    prefix = secrets.token_hex(6)
    return prefix, f"cbk_{prefix}_{random_token(32)}"


def split_api_key(key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "cbk" or len(parts[1]) != 12:
        return None
    return parts[1]
