"""A server started with --push-relay (the real `vsc push-relay run`, wanting a post token), short push timings
and a profiles.json with branding: each device's topic gets an opaque notification per request (a JWE only
the device opens), devices learn their topic, the stream keeps alive and ends on time, and a user's two
devices both get a request that the first answer decides."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import USER_PIN, run_vsc
from tests.relay.relay_process import Listener, Relay, start_relay
from tests.server.conftest import BACK_ENDS, new_database
from tests.server.idserver import IdServer, start_server
from tests.server.request_device import CardDevice, PushReader, activate
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.http import ServerError
from vsc_provider.relay.client import RelayError, post_notification

LOGO = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
BRANDING = {"name": "Example Bank", "colour": "#aa3300", "logo": LOGO}


POST_TOKEN = "post-token-of-the-test-relay"


@pytest.fixture(scope="module", params=BACK_ENDS)
def back_end(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def relay(back_end: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """One relay for each back end's round (a test stops it)."""
    started = start_relay(tmp_path_factory.mktemp("relay"), env={"VSC_RELAY_POST_TOKEN": POST_TOKEN})
    yield started
    started.stop()


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, back_end: str, tmp_path_factory: pytest.TempPathFactory, relay: Relay
) -> Iterator[IdServer]:
    data = tmp_path_factory.mktemp("relayed") / "data"
    data.mkdir()
    profile = {
        "name": "default",
        "keys": [{"id": "auth", "usage": "auth", "type": "rsa2048"}, {"id": "sign", "usage": "sign", "type": "p256"}],
        "branding": BRANDING,
    }
    (data / "profiles.json").write_text(json.dumps([profile]))
    env = {"VSC_SERVER_PUSH_KEEPALIVE": "0.5", "VSC_SERVER_PUSH_MAX_STREAM": "3", "VSC_RELAY_POST_TOKEN": POST_TOKEN}
    args = ("--push-relay", relay.url + "/")
    srv = start_server(data, env=env, args=args, database=new_database(request, back_end))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def devices(server: IdServer, card_store: Path) -> list[CardDevice]:
    return [activate(server, "two-devices", USER_PIN), activate(server, "two-devices", USER_PIN)]


def admin_request(server: IdServer, **body: Any) -> dict[str, Any]:
    return server.admin("POST", "/admin/requests", {"user": "two-devices", "kind": "auth", **body})


def test_each_device_topic_gets_an_opaque_notification_through_the_relay(
    server: IdServer, relay: Relay, devices: list[CardDevice]
) -> None:
    secret = (server.data / "relay-secret").read_bytes()
    topics = [wire.b64u(hmac.new(secret, d.device_id.encode(), hashlib.sha256).digest()) for d in devices]
    for device, topic in zip(devices, topics, strict=True):
        assert device.call("/v1/requests", {})["relay"] == {"url": relay.url, "topic": topic}
    base = relay.health()["listeners"]
    listeners = [Listener(relay.url, topic) for topic in topics]
    try:
        relay.wait_listeners(base + 2)
        made = admin_request(server)
        for device, listener in zip(devices, listeners, strict=True):
            jwe = listener.next(timeout=10)  # posted with the relay's post token, or the relay would refuse it
            assert made["id"] not in jwe
            opened = json.loads(device.device_key.open(jwe))
            assert opened["waiting"] >= 1 and abs(opened["iat"] - time.time()) < 30
    finally:
        for listener in listeners:
            listener.close()
    with pytest.raises(RelayError) as info:  # the relay does want the token
        post_notification(relay.url, topics[0], jwe)
    assert (info.value.status, info.value.error) == (401, "bad_post_token")
    server.admin("GET", f"/admin/requests/{made['id']}")


def test_both_devices_get_it_the_first_answer_decides_the_other_sees_gone(
    server: IdServer, devices: list[CardDevice]
) -> None:
    made = admin_request(server)
    first, second = devices
    seen = [d.find(made["id"]) for d in devices]
    assert [s.claims["device"] for s in seen] == [first.device_id, second.device_id]
    assert seen[0].claims["branding"] == BRANDING
    reader = PushReader(second)
    try:
        while reader.next("request")[1] != seen[1].token:  # earlier requests are pending too
            pass
        first.call("/v1/requests/answer", first.approval(seen[0]))
        assert reader.next("gone")[1] == made["id"]
    finally:
        reader.close()
    with pytest.raises(ServerError) as info:
        second.call("/v1/requests/answer", second.approval(seen[1]))
    assert (info.value.status, info.value.error) == (409, "not_pending")
    # an answer with the other device's display hash (its document names the other device) is refused
    with pytest.raises(ServerError) as info:
        second.call(
            "/v1/requests/answer", {"id": made["id"], "display_hash": seen[0].display_hash, "decision": "reject"}
        )
    assert info.value.error == "display_mismatch"
    doc = server.admin("GET", f"/admin/requests/{made['id']}")
    assert (doc["state"], doc["device"]) == ("APPROVED", first.device_id)


def test_the_stream_keeps_alive_and_ends_on_time(server: IdServer, devices: list[CardDevice]) -> None:
    started = time.monotonic()
    reader = PushReader(devices[0])
    try:
        assert reader.ended.wait(15)
        lasted = time.monotonic() - started
        comments = []
        while not reader.events.empty():
            _, event, data = reader.events.get()
            if event == ":":
                comments.append(data)
        assert 2.5 < lasted < 10, lasted
        assert len(comments) >= 3 and set(comments) == {": keep-alive"}
    finally:
        reader.close()


def test_an_unreachable_relay_is_logged_not_fatal(server: IdServer, relay: Relay, devices: list[CardDevice]) -> None:
    relay.stop()
    started = time.monotonic()
    made = admin_request(server)
    assert time.monotonic() - started < 5
    assert devices[0].find(made["id"]).claims["id"] == made["id"]
    log = server.data.parent / f"{server.data.name}.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "push-relay notification" not in log.read_text():
        time.sleep(0.1)
    assert "push-relay notification" in log.read_text()


def test_a_device_holds_a_bounded_size_of_pending_requests(server: IdServer, devices: list[CardDevice]) -> None:
    from vsc_provider.server.requests import MAX_PENDING_CHARS

    pdf = b"%PDF-1.4\n" + os.urandom(2 * 1024 * 1024 - 9)
    item = {"type": "pdf", "label": "contract", "data": wire.b64u(pdf)}
    made = []
    with pytest.raises(ServerError) as info:
        for _ in range(MAX_PENDING_CHARS // len(item["data"]) + 2):
            made.append(admin_request(server, metadata=[item])["id"])
    assert (info.value.status, info.value.error) == (429, "too_many_pending")
    assert 8 <= len(made) <= MAX_PENDING_CHARS // len(item["data"]) + 1
    for request_id in made:
        run_vsc("server", "request", "cancel", "--data", str(server.data), request_id)
    assert admin_request(server)["state"] == "PENDING"


def test_a_device_holds_a_bounded_number_of_pending_requests(server: IdServer, devices: list[CardDevice]) -> None:
    from vsc_provider.server.requests import MAX_PENDING

    waiting = len(devices[0].call("/v1/requests", {})["requests"])
    for _ in range(MAX_PENDING - waiting):
        admin_request(server)
    with pytest.raises(ServerError) as info:
        admin_request(server)
    assert (info.value.status, info.value.error) == (429, "too_many_pending")
    assert len(devices[0].call("/v1/requests", {})["requests"]) == MAX_PENDING


def test_a_lone_server_that_lost_its_relay_secret_makes_a_new_one(tmp_path: Path) -> None:
    """On SQLite no other instance shares the secret: a lost file is made anew (and recorded), not refused."""
    data = tmp_path / "data"
    relayed = ("--push-relay", "https://127.0.0.1:9")  # only loaded at start: nothing is posted
    start_server(data, args=relayed).stop()
    lost = (data / "relay-secret").read_bytes()
    (data / "relay-secret").unlink()
    server = start_server(data, args=relayed)
    try:
        made = (data / "relay-secret").read_bytes()
        assert len(made) == 32 and made != lost
        with server.client() as client:
            assert client.call("GET", "/v1/server")["protocol"] == 1
    finally:
        server.stop()
    start_server(data, args=relayed).stop()  # and the new one is the recorded one from then on
    assert (data / "relay-secret").read_bytes() == made
