"""The hub's bounds, in process (a full socket buffer on loopback holds megabytes, so a slow listener's queue
cannot be filled through the real process in a test's time), and what the wire checks accept."""

from __future__ import annotations

import asyncio
import json

import pytest
from jwcrypto import jwe, jwk

from tests.relay.relay_process import fake_jwe, new_topic
from vsc_provider.relay import wire
from vsc_provider.relay.hub import Hub, Limits, RelayFull, TopicFull


def test_a_slow_listener_keeps_the_newest_notifications() -> None:
    async def run() -> None:
        hub = Hub(Limits(queue=4))
        topic = new_topic()
        slow, quick = hub.open(topic), hub.open(topic)
        for i in range(10):
            assert hub.publish(topic, f"n{i}") == 2
            if i == 5:
                assert quick.take() == [f"n{j}" for j in range(6)][-4:]
        assert slow.take() == ["n6", "n7", "n8", "n9"]  # the oldest went first
        assert slow.dropped == 6
        assert slow.take() == [] and not slow.wake.is_set()
        assert quick.take() == ["n6", "n7", "n8", "n9"]

    asyncio.run(run())


def test_the_caps_and_closing() -> None:
    async def run() -> None:
        hub = Hub(Limits(max_listeners=3, max_per_topic=2))
        a, b = new_topic(), new_topic()
        first, second = hub.open(a), hub.open(a)
        with pytest.raises(TopicFull):
            hub.open(a)
        third = hub.open(b)
        with pytest.raises(RelayFull):
            hub.open(new_topic())
        hub.close(first)
        hub.close(first)  # twice is harmless
        assert (hub.listeners, hub.topics) == (2, 2)
        hub.close(second)
        hub.close(third)
        assert (hub.listeners, hub.topics) == (0, 0)
        assert hub.publish(a, "gone") == 0

    asyncio.run(run())


def test_real_jwes_pass_the_check() -> None:
    rsa_key = jwk.JWK.generate(kty="RSA", size=2048)
    ec_key = jwk.JWK.generate(kty="EC", crv="P-256")
    secret = jwk.JWK.generate(kty="oct", size=256)
    for key, alg in ((rsa_key, "RSA-OAEP-256"), (ec_key, "ECDH-ES+A256KW"), (ec_key, "ECDH-ES"), (secret, "dir")):
        token = jwe.JWE(b'{"waiting": 1}', json.dumps({"alg": alg, "enc": "A256GCM", "kid": "k1"}), recipient=key)
        compact = token.serialize(compact=True)
        assert wire.notification_problem(compact) is None, alg  # ECDH-ES and dir: an empty encrypted key
    assert wire.notification_problem(fake_jwe()) is None


@pytest.mark.parametrize("bad", ["", ".", "....", "a.b.c.d.e", "e30.AAAA.AAAA.AAAA.AAAA", 42, None, ["x"]])
def test_malformed_notifications_are_named(bad: object) -> None:
    assert wire.notification_problem(bad)


def test_topics() -> None:
    assert wire.topic_problem(new_topic()) is None
    for bad in ("", "A" * 43 + "=", "A" * 42, "A" * 44, "A" * 42 + "B", "A" * 42 + "+", "A" * 42 + "\u00e9"):
        assert wire.topic_problem(bad), bad
