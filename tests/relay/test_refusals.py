"""What the real relay refuses, and how: bad topics and bodies (400), oversized bodies (413), the caps
(429 per topic, 503 for the whole relay), posters without the post token (401). Always JSON, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.relay.relay_process import Listener, Relay, fake_jwe, new_topic
from vsc_provider.relay.client import RelayError, listen, post_notification
from vsc_provider.relay.wire import MAX_BODY


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GOOD = fake_jwe()
HEADER, KEY, IV, CIPHERTEXT, TAG = GOOD.split(".")

BAD_TOPICS = {
    "short": _b64u(bytes(31)),
    "long": _b64u(bytes(33)),
    "padded": _b64u(bytes(32)) + "=",
    "standard alphabet": "+" + _b64u(bytes(32))[1:],
    "trailing bits": _b64u(bytes(32))[:-1] + "B",  # decodes to the same bytes: a second spelling
    "percent-encoded": "%00" * 43,
    "unicode": "é" * 43,
}

BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"notification=x", "malformed"),
    "not UTF-8": (b'{"notification": "\xff"}', "malformed"),
    "a list": (json.dumps([GOOD]).encode(), "malformed"),
    "no notification": (b"{}", "malformed"),
    "another field too": (json.dumps({"notification": GOOD, "device": "d1"}).encode(), "malformed"),
    "a number": (b'{"notification": 5}', "bad_notification"),
    "four parts": (json.dumps({"notification": ".".join([HEADER, KEY, IV, CIPHERTEXT])}).encode(), "bad_notification"),
    "six parts": (json.dumps({"notification": GOOD + ".AAAA"}).encode(), "bad_notification"),
    "a JWS": (json.dumps({"notification": f"{HEADER}.{CIPHERTEXT}.{TAG}"}).encode(), "bad_notification"),
    "not base64url": (json.dumps({"notification": GOOD.replace(IV, IV[:-2] + "+/")}).encode(), "bad_notification"),
    "no ciphertext": (json.dumps({"notification": f"{HEADER}.{KEY}.{IV}..{TAG}"}).encode(), "bad_notification"),
    "header not JSON": (json.dumps({"notification": GOOD.replace(HEADER, _b64u(b"alg"))}).encode(), "bad_notification"),
    "header without enc": (
        json.dumps({"notification": GOOD.replace(HEADER, _b64u(b'{"alg":"RSA-OAEP-256"}'))}).encode(),
        "bad_notification",
    ),
}


def _refused(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == error
    assert response.json()["detail"]


@pytest.mark.parametrize("name", sorted(BAD_TOPICS))
def test_a_bad_topic_is_400_for_posters_and_listeners(relay: Relay, name: str) -> None:
    url = f"{relay.url}/v1/topics/{BAD_TOPICS[name]}"
    _refused(httpx.post(url, json={"notification": GOOD}), 400, "bad_topic")
    _refused(httpx.get(url), 400, "bad_topic")


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_a_bad_body_is_400(relay: Relay, name: str) -> None:
    body, error = BAD_BODIES[name]
    response = httpx.post(f"{relay.url}/v1/topics/{new_topic()}", content=body)
    _refused(response, 400, error)


def test_a_large_body_is_413_declared_or_streamed(relay: Relay) -> None:
    url = f"{relay.url}/v1/topics/{new_topic()}"
    big = json.dumps({"notification": GOOD + "A" * MAX_BODY}).encode()
    _refused(httpx.post(url, content=big), 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the relay counts as it reads
        for _ in range(64):
            yield b" " * 1024

    _refused(httpx.post(url, content=chunks()), 413, "too_large")
    # just under the bound is read (and refused for what it is, not for its size)
    padded = b" " * (MAX_BODY - 200) + json.dumps({"notification": GOOD}).encode()[: 200 - 2]
    assert len(padded) <= MAX_BODY
    _refused(httpx.post(url, content=padded), 400, "malformed")


def test_unknown_paths_and_methods_answer_json(relay: Relay) -> None:
    _refused(httpx.get(f"{relay.url}/v1/topics"), 404, "http")
    _refused(httpx.put(f"{relay.url}/v1/topics/{new_topic()}", content=b"{}"), 405, "http")
    _refused(httpx.delete(f"{relay.url}/v1/health"), 405, "http")
    slashed = "/" + _b64u(bytes(32))[1:]  # the standard alphabet's '/' makes it another path
    _refused(httpx.post(f"{relay.url}/v1/topics/{slashed}", json={"notification": GOOD}), 404, "http")


def test_after_all_refusals_the_relay_is_well_and_logged_no_error(relay: Relay) -> None:
    assert relay.health()["status"] == "ok"
    log = relay.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_the_caps_answer_429_per_topic_and_503_for_the_relay(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay("--max-per-topic", "2", "--max-listeners", "3")
    crowded, other, third = new_topic(), new_topic(), new_topic()
    first = [Listener(relay.url, crowded), Listener(relay.url, crowded)]
    relay.wait_listeners(2)
    try:
        with pytest.raises(RelayError) as topic_full:
            next(listen(relay.url, crowded))
        assert (topic_full.value.status, topic_full.value.error) == (429, "too_many_listeners")
        answer = httpx.get(f"{relay.url}/v1/topics/{crowded}")
        _refused(answer, 429, "too_many_listeners")
        assert answer.headers["retry-after"]

        elsewhere = Listener(relay.url, other)
        relay.wait_listeners(3)
        with pytest.raises(RelayError) as relay_full:
            next(listen(relay.url, third))
        assert (relay_full.value.status, relay_full.value.error) == (503, "relay_full")
        _refused(httpx.get(f"{relay.url}/v1/topics/{third}"), 503, "relay_full")

        # a listener that leaves frees its place at once
        first[0].close()
        relay.wait_listeners(2)
        replacement = Listener(relay.url, crowded)
        relay.wait_listeners(3)
        assert post_notification(relay.url, crowded, GOOD) == 2
        assert replacement.next() == GOOD and first[1].next() == GOOD
        for listener in (replacement, elsewhere):
            listener.close()
    finally:
        for listener in first:
            listener.close()
    assert all(listener.error is None for listener in first)


def test_a_client_that_vanishes_leaves_the_hub(make_relay: Callable[..., Relay]) -> None:
    # no stop event, no clean close: the connection just drops; the relay must notice without a write
    relay = make_relay("--max-per-topic", "1")
    topic = new_topic()
    with httpx.Client() as client, client.stream("GET", f"{relay.url}/v1/topics/{topic}") as response:
        assert response.status_code == 200
        relay.wait_listeners(1)
    relay.wait_listeners(0, timeout=5)
    with httpx.Client() as client, client.stream("GET", f"{relay.url}/v1/topics/{topic}") as response:
        assert response.status_code == 200  # the one place of the topic is free again


def test_the_post_token_refuses_posters_without_it(make_relay: Callable[..., Relay]) -> None:
    token = "relay-post-token-for-tests-0123456789"
    relay = make_relay(env={"VSC_RELAY_POST_TOKEN": token})
    topic = new_topic()
    listener = Listener(relay.url, topic)  # listeners need no token
    relay.wait_listeners(1)
    try:
        for given in (None, "wrong-token", token + "x", token[:-1]):
            with pytest.raises(RelayError) as refused:
                post_notification(relay.url, topic, GOOD, token=given)
            assert (refused.value.status, refused.value.error) == (401, "bad_post_token")
        response = httpx.post(
            f"{relay.url}/v1/topics/{topic}", json={"notification": GOOD}, headers={"Authorization": token}
        )
        _refused(response, 401, "bad_post_token")  # the Bearer scheme is part of it
        assert listener.got.empty()
        assert post_notification(relay.url, topic, GOOD, token=token) == 1
        assert listener.next() == GOOD
    finally:
        listener.close()
    # the option works as the variable does
    other = make_relay("--post-token", "another-token")
    with pytest.raises(RelayError):
        post_notification(other.url, topic, GOOD)
    assert post_notification(other.url, topic, GOOD, token="another-token") == 0
