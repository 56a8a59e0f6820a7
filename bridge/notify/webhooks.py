"""Webhook wire format and outgoing requests (no database here).

- Signing per the Standard Webhooks specification: headers `webhook-id`,
  `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
  space-separated list of `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`
  where the key is the base64 part of a `whsec_…` secret. During a secret
  rotation both secrets sign, so a receiver may switch at its own pace.
- The guard that keeps a webhook URL from becoming a way into the server's
  own network: loopback, private (RFC 1918, RFC 4193), link-local (RFC 3927,
  RFC 4291 §2.5.6), CGNAT (RFC 6598), multicast and reserved targets are
  refused, both for IP literals and for every address a name resolves to at
  connect time (so DNS rebinding gains nothing), unless a configured network
  allows them.
- `Sender`: one request with a total timeout, no redirects followed, and at
  most `max_response_bytes` of the answer read.

The units of work (endpoints, the delivery queue) are in
`bridge.notify.webhooks_service`; the loop that sends is in
`bridge.notify.webhooks_worker`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from bridge.errors import Invalid

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
USER_AGENT = "calbridge-webhooks/1"
MAX_URL_LENGTH = 2000

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


# --- signing ------------------------------------------------------------------

def format_secret(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(keys: Iterable[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: one `v1,` signature per key."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
        for k in keys
    )


def signed_headers(keys: Sequence[bytes], message_id: str, body: bytes,
                   timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(keys, message_id, ts, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


# --- where a webhook may go ---------------------------------------------------

def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    """`[webhooks] allow_networks`: comma-separated CIDRs."""
    nets = []
    for part in spec.split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise Invalid(f"allow_networks: {part.strip()!r} is not a network",
                              field="allow_networks") from None
    return tuple(nets)


def _plain(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_internal(ip: IPAddress) -> bool:
    """True for addresses a webhook must not reach by default."""
    ip = _plain(ip)
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified
            or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT))


def address_allowed(ip: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    ip = _plain(ip)
    if not is_internal(ip):
        return True
    return any(ip.version == net.version and ip in net for net in allow)


def _literal(host: str) -> IPAddress | None:
    """The address a host names by itself, including the legacy IPv4 forms
    (`2130706433`, `0x7f.1`, `127.1`) that resolvers accept."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def validate_url(raw: object, allow: Sequence[IPNetwork]) -> str:
    """A webhook URL as stored, or `Invalid` naming what is wrong with it."""
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid("url is required", field="url")
    text = raw.strip()
    if len(text) > MAX_URL_LENGTH:
        raise Invalid(f"url is longer than {MAX_URL_LENGTH} characters", field="url")
    try:
        url = URL(text)
    except (ValueError, TypeError):
        raise Invalid("url is not a valid URL", field="url") from None
    if url.scheme not in ("http", "https"):
        raise Invalid("url must start with https:// or http://", field="url")
    if not url.host:
        raise Invalid("url has no host", field="url")
    if url.user is not None or url.password is not None:
        raise Invalid("url must not contain credentials", field="url")
    if url.fragment:
        raise Invalid("url must not contain a #fragment", field="url")
    host = url.host.lower().rstrip(".")
    ip = _literal(host)
    if ip is None and (host == "localhost" or host.endswith(".localhost")):
        ip = ipaddress.ip_address("127.0.0.1")
    if ip is not None and not address_allowed(ip, allow):
        raise Invalid("url points to a loopback, private or link-local address; "
                      "webhooks go to public hosts", field="url")
    return str(url)


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then drops the addresses not allowed; a
    name with none left fails to connect with a clear error."""

    def __init__(self, allow: Sequence[IPNetwork]) -> None:
        self.allow = tuple(allow)
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if address_allowed(ipaddress.ip_address(r["host"]), self.allow)]
        if not kept:
            raise OSError(f"refused: {host} resolves only to internal addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()


# --- sending ------------------------------------------------------------------

@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str
    duration_ms: int
    excerpt: str


class Sender:
    """One aiohttp client session per worker; `send` never raises."""

    def __init__(self, *, timeout: float, max_response_bytes: int,
                 allow: Sequence[IPNetwork], limit: int = 32) -> None:
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.allow = tuple(allow)
        self._session: aiohttp.ClientSession | None = None
        self._limit = limit

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allow),
                                             limit=self._limit, use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
                auto_decompress=False)
        return self._session

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        start = time.perf_counter()

        def done(ok: bool, code: int | None, error: str, excerpt: str = "") -> SendResult:
            return SendResult(ok, code, error[:500], int((time.perf_counter() - start) * 1000),
                              excerpt[:500])

        host = URL(url).host or ""
        ip = _literal(host)
        if ip is not None and not address_allowed(ip, self.allow):
            return done(False, None, f"refused: {host} is an internal address")
        try:
            async with self._client().post(url, data=body, headers=headers,
                                           allow_redirects=False) as resp:
                chunks: list[bytes] = []
                left = self.max_response_bytes
                while left > 0:
                    chunk = await resp.content.read(left)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    left -= len(chunk)
                excerpt = b"".join(chunks)[:500].decode("utf-8", "replace")
                if 200 <= resp.status < 300:
                    return done(True, resp.status, "", excerpt)
                reason = "redirect not followed" if 300 <= resp.status < 400 else "not a 2xx answer"
                resp.close()
                return done(False, resp.status, f"HTTP {resp.status}: {reason}", excerpt)
        except TimeoutError:
            return done(False, None, f"timed out after {self.timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            return done(False, None, f"cannot connect: {exc.os_error or exc}")
        except (aiohttp.ClientError, OSError) as exc:
            return done(False, None, f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
