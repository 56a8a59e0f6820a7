"""The outgoing side without a database: Standard Webhooks signatures as the
reference verifier reads them, and the guard against internal targets,
for IP literals and for names at connect time."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from bridge.config import WebhookSettings
from bridge.errors import Invalid
from bridge.notify import webhooks
from bridge.notify.webhooks_service import backoff
from tests.webhooks.conftest import Receiver

SECRET = webhooks.format_secret(b"k" * 32)


def test_signature_verifies_with_the_reference_library() -> None:
    body = json.dumps({"type": "appointment.created", "data": {"id": 1}}).encode()
    headers = webhooks.signed_headers([webhooks.secret_key(SECRET)], "evt_1_5", body)
    assert Webhook(SECRET).verify(body, headers) == {"type": "appointment.created",
                                                      "data": {"id": 1}}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.format_secret(b"z" * 32)).verify(body, headers)


def test_signature_matches_the_specification_example() -> None:
    # The example of the Standard Webhooks specification (spec/standard-webhooks.md).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    value = webhooks.sign([webhooks.secret_key(secret)], "msg_p5jXN8AQM9LWM0D4loKWxJek",
                          1614265330, body)
    assert value == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_internal_addresses() -> None:
    allow = webhooks.parse_networks("127.0.0.1/32, 10.9.0.0/16")
    for ip, allowed in (("127.0.0.1", True), ("127.0.0.2", False), ("10.9.3.4", True),
                        ("10.8.0.1", False), ("169.254.169.254", False), ("::1", False),
                        ("::ffff:10.9.0.1", True), ("93.184.215.14", True),
                        ("2606:4700::1111", True), ("fd00::1", False), ("224.0.0.1", False)):
        assert webhooks.address_allowed(ipaddress.ip_address(ip), allow) is allowed, ip
    with pytest.raises(Invalid):
        webhooks.parse_networks("10.0.0.0/33")


async def test_resolver_refuses_names_of_internal_addresses() -> None:
    resolver = webhooks.GuardedResolver(())
    try:
        with pytest.raises(OSError, match="internal"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


async def test_sender_refuses_internal_targets_without_connecting(receiver: Receiver) -> None:
    receiver.secrets.append(SECRET)
    body = b"{}"
    headers = webhooks.signed_headers([webhooks.secret_key(SECRET)], "m1", body)
    refused = webhooks.Sender(timeout=2, max_response_bytes=100, allow=())
    try:
        result = await refused.send(receiver.url, body, headers)
        assert not result.ok and "internal" in result.error
        result = await refused.send(receiver.url.replace("127.0.0.1", "localhost"), body, headers)
        assert not result.ok and "internal" in result.error
    finally:
        await refused.close()
    assert receiver.got == [] and receiver.bad_signatures == 0
    allowed = webhooks.Sender(timeout=2, max_response_bytes=100,
                              allow=webhooks.parse_networks("127.0.0.1/32"))
    try:
        result = await allowed.send(receiver.url, b'{"type": "t", "data": {}}',
                                    webhooks.signed_headers([webhooks.secret_key(SECRET)], "m2",
                                                            b'{"type": "t", "data": {}}'))
        assert result.ok and result.status_code == 200
    finally:
        await allowed.close()


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    cfg = WebhookSettings(retry_base_seconds=5, retry_max_seconds=3600)
    rng = random.Random(1)
    delays = [backoff(n, cfg, rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        full = min(3600, 5 * 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert max(delays) <= 3600
    assert len({round(backoff(3, cfg, rng), 6) for _ in range(20)}) > 10
