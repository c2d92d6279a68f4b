"""Fan-out through the real relay process: every listener of a topic gets each notification unchanged, no other
listener does, nobody listening means dropped, and 200 posts in a row all arrive."""

from __future__ import annotations

import json
import queue
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk

from tests.relay.relay_process import Listener, Relay, fake_jwe, new_topic, post_latencies
from vsc_provider.relay.client import post_notification


def test_every_listener_of_the_topic_gets_it_and_no_one_else(relay: Relay) -> None:
    topic, other = new_topic(), new_topic()
    base = relay.health()["listeners"]
    mine = [Listener(relay.url, topic) for _ in range(3)]
    theirs = Listener(relay.url, other)
    try:
        relay.wait_listeners(base + 4)
        first, second = fake_jwe("first"), fake_jwe("second")
        assert post_notification(relay.url, topic, first) == 3
        assert post_notification(relay.url, topic, second) == 3
        for listener in mine:
            assert [listener.next(), listener.next()] == [first, second]  # in order, unchanged
        with pytest.raises(queue.Empty):
            theirs.got.get(timeout=0.5)
        third = fake_jwe("third")
        assert post_notification(relay.url, other, third) == 1
        assert theirs.next() == third
        for listener in mine:
            assert listener.got.empty()
    finally:
        for listener in [*mine, theirs]:
            listener.close()
    assert all(listener.ended.is_set() and listener.error is None for listener in [*mine, theirs])
    relay.wait_listeners(base)  # the stop event ended each stream, and the relay let them go


def test_a_post_without_listener_is_dropped_not_kept(relay: Relay) -> None:
    topic = new_topic()
    assert post_notification(relay.url, topic, fake_jwe("nobody")) == 0
    base = relay.health()["listeners"]
    late = Listener(relay.url, topic)
    try:
        relay.wait_listeners(base + 1)
        # stateless: what was posted before anyone listened is gone; what comes next arrives
        fresh = fake_jwe("fresh")
        assert post_notification(relay.url, topic, fresh) == 1
        assert late.next() == fresh
        assert late.got.empty()
    finally:
        late.close()


def test_a_jwe_to_an_rsa_key_passes_unchanged_and_decrypts_at_the_listener(relay: Relay) -> None:
    device_key = jwk.JWK.generate(kty="RSA", size=2048)
    claims = {"waiting": 2, "iat": int(time.time())}
    token = jwcrypto_jwe.JWE(
        json.dumps(claims).encode(), json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM"}), recipient=device_key
    )
    compact = token.serialize(compact=True)
    topic = new_topic()
    base = relay.health()["listeners"]
    listener = Listener(relay.url, topic)
    try:
        relay.wait_listeners(base + 1)
        assert post_notification(relay.url, topic, compact) == 1
        received = listener.next()
    finally:
        listener.close()
    assert received == compact
    opened = jwcrypto_jwe.JWE()
    opened.deserialize(received, key=device_key)
    assert json.loads(opened.payload) == claims
    # and another key cannot open it: the relay carried ciphertext, nothing more
    with pytest.raises(jwcrypto_jwe.InvalidJWEData):
        jwcrypto_jwe.JWE().deserialize(received, key=jwk.JWK.generate(kty="RSA", size=2048))


def test_sequential_posts_each_arrive(relay: Relay) -> None:
    """200 posts, one at a time, each over a new connection, each seen by the listener (the latency figures
    are the benchmark's: benchmarks/test_push_relay.py)."""
    latencies = post_latencies(relay, 200)
    assert len(latencies) == 200 and all(t > 0 for t in latencies)


def test_concurrent_posters_lose_nothing(relay: Relay) -> None:
    # 4 posters at once, 25 posts each, to one topic with 8 listeners (the default cap): all 100 reach all 8
    topic = new_topic()
    base = relay.health()["listeners"]
    listeners = [Listener(relay.url, topic) for _ in range(8)]
    try:
        relay.wait_listeners(base + 8)
        sent = [[fake_jwe(f"{p}-{i}") for i in range(25)] for p in range(4)]

        def poster(jwes: list[str]) -> list[int]:
            return [post_notification(relay.url, topic, jwe) for jwe in jwes]

        with ThreadPoolExecutor(4) as pool:
            counts = [n for batch in pool.map(poster, sent) for n in batch]
        assert counts == [8] * 100
        expected = sorted(j for batch in sent for j in batch)
        for listener in listeners:
            got = [listener.next() for _ in range(100)]
            assert sorted(got) == expected
            for batch in sent:  # each poster's own posts arrive in the order it made them
                assert [j for j in got if j in set(batch)] == batch
    finally:
        for listener in listeners:
            listener.close()
