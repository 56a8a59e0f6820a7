"""Signed session cookies and CSRF tokens for the admin console (pure).

A session cookie is `base64url(JSON claims) "." base64url(HMAC-SHA256)`
signed with the server secret (`settings.secret()`); the claims hold the
admin, their company, issue and expiry times, a random nonce and a short
fingerprint of the admin's password hash, so changing the password ends
every session. Nothing is kept in process memory (DESIGN rule 7): any
worker can check any cookie.

CSRF: every form carries `HMAC(secret, "csrf:" + nonce)` of the session
(synchroniser token bound to the session); the sign-in form, which has no
session yet, is bound to a random pre-session cookie the same way. Tokens
are compared in constant time. No aiohttp, no SQL here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "cb_session"
LOGIN_COOKIE = "cb_login"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, data: str) -> str:
    return _b64(hmac.new(secret, f"{purpose}:{data}".encode(), hashlib.sha256).digest())


def password_fingerprint(secret: bytes, password_hash: str) -> str:
    """A short keyed digest of the stored hash: it changes when the password does."""
    return _mac(secret, "pwfp", password_hash)[:16]


@dataclass(frozen=True)
class Session:
    admin_id: int
    company_id: int
    issued: int
    expires: int
    nonce: str
    fingerprint: str

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires


def new_session(admin_id: int, company_id: int, fingerprint: str, minutes: int,
                now: float | None = None) -> Session:
    issued = int(time.time() if now is None else now)
    return Session(admin_id, company_id, issued, issued + minutes * 60,
                   secrets.token_urlsafe(16), fingerprint)


def encode(session: Session, secret: bytes) -> str:
    claims = {"a": session.admin_id, "c": session.company_id, "i": session.issued,
              "e": session.expires, "n": session.nonce, "f": session.fingerprint}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, 'session', body)}"


def decode(value: str, secret: bytes) -> Session | None:
    """The session of a cookie whose signature is good (expired or not), else None."""
    body, _, sig = value.partition(".")
    if not body or not sig or not hmac.compare_digest(sig, _mac(secret, "session", body)):
        return None
    try:
        c = json.loads(_unb64(body))
        return Session(int(c["a"]), int(c["c"]), int(c["i"]), int(c["e"]), str(c["n"]),
                       str(c["f"]))
    except (ValueError, KeyError, TypeError):
        return None


def csrf_token(secret: bytes, nonce: str) -> str:
    return _mac(secret, "csrf", nonce)


def check_csrf(secret: bytes, nonce: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(token, csrf_token(secret, nonce))


def new_nonce() -> str:
    return secrets.token_urlsafe(16)
