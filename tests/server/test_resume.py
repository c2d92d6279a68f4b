"""Resumable activation on the server alone: the device that used a code gets the same answer again until
its first kid-signed request; every other key is refused as for any used code and changes nothing."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.server.idserver import IdServer, light_request, software_csr, start_server
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey, jwe_to_server
from vsc_provider.provisioning.http import ServerError


def activate(server: IdServer, link: str, device: DeviceKey, key: Any) -> dict[str, Any]:
    body, client = light_request(server, link, device=device, keys=[{"id": "auth", "csr": software_csr(key)}])
    with client:
        return client.call("POST", "/v1/activate", body)


def refusal(server: IdServer, link: str, device: DeviceKey, key: Any) -> ServerError:
    with pytest.raises(ServerError) as info:
        activate(server, link, device, key)
    return info.value


def signed(server: IdServer, device: DeviceKey, device_id: str, path: str) -> dict[str, Any]:
    with server.client() as c:
        return c.call("POST", path, device.sign(server.url + path, c.nonce(), {}, kid=device_id))


def snapshot(server: IdServer) -> list[tuple[Any, ...]]:
    return [(d["id"], d["state"], d["confirmed"]) for d in server.devices()]


def test_the_same_device_gets_the_same_answer_until_it_confirms(id_server: IdServer) -> None:
    link = id_server.link("rita", "light")
    device, key = DeviceKey.generate(), ec.generate_private_key(ec.SECP256R1())
    first = activate(id_server, link, device, key)
    assert [d["confirmed"] for d in id_server.devices() if d["id"] == first["device"]] == [None]
    again = activate(id_server, link, device, key)  # a fresh nonce, a fresh CSR of the same key
    assert again == first
    before = snapshot(id_server)
    # the same device with another card key: a conflict, not a second certificate
    mismatch = refusal(id_server, link, device, ec.generate_private_key(ec.SECP256R1()))
    assert (mismatch.status, mismatch.error) == (409, "activation_mismatch")
    # another device key, even with the certified card key: refused as any used code
    stranger = refusal(id_server, link, DeviceKey.generate(), key)
    assert (stranger.status, stranger.error) == (404, "unknown_code")
    # concurrent replays by the device and by strangers: the device always gets its answer, nobody else anything
    devices = [device if i % 2 else DeviceKey.generate() for i in range(12)]

    def attempt(d: DeviceKey) -> Any:
        try:
            return activate(id_server, link, d, key)["device"]
        except ServerError as exc:
            return exc.status

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(attempt, devices, timeout=300))
    assert results == [first["device"] if d is device else 404 for d in devices]
    assert snapshot(id_server) == before
    # the first request under the kid confirms the device: no more replays
    assert signed(id_server, device, first["device"], "/v1/status")["state"] == "active"
    confirmed = [d["confirmed"] for d in id_server.devices() if d["id"] == first["device"]]
    assert confirmed[0] is not None
    gone = refusal(id_server, link, device, key)
    assert (gone.status, gone.error) == (404, "unknown_code")


def test_replay_returns_the_escrowed_key_and_the_server_secret(id_server: IdServer) -> None:
    device = DeviceKey.generate()
    info = id_server.client()
    with info:
        jwks = info.call("GET", "/v1/server")["jwks"]

    def run(link: str, key: Any, verifier: bytes, profile_key: str = "auth") -> dict[str, Any]:
        parsed = wire.ActivationLink.parse(link)
        payload = {
            "code": parsed.code,
            "keys": [{"id": profile_key, "csr": software_csr(key)}],
            "pin_verifier": jwe_to_server(jwks, verifier),
        }
        with id_server.client() as c:
            return c.call("POST", "/v1/activate", device.sign(id_server.url + "/v1/activate", c.nonce(), payload))

    # online profile: the same server secret again, and only for the same PIN verifier
    link = id_server.link("sam", "online")
    key, verifier = rsa.generate_private_key(65537, 2048), secrets.token_bytes(32)
    first = run(link, key, verifier)
    second = run(link, key, verifier)
    assert device.open(second["secret"]) == device.open(first["secret"])
    assert second["keys"] == first["keys"] and second["device"] == first["device"]
    # a replay compares PIN verifiers: a wrong one is a counted PIN try, like a wrong /v1/pin
    with pytest.raises(ServerError) as info_err:
        run(link, key, secrets.token_bytes(32))
    assert (info_err.value.status, info_err.value.error) == (403, "pin_incorrect")
    assert info_err.value.body is not None and info_err.value.body["tries_left"] == 9
    counted = [d["pin_failures"] for d in id_server.devices() if d["id"] == first["device"]]
    assert counted == [1]
    assert run(link, key, verifier)["device"] == first["device"]  # the right one still replays, and resets
    assert [d["pin_failures"] for d in id_server.devices() if d["id"] == first["device"]] == [0]
    # escrow profile: the same escrowed private key, sealed to the device key again
    link = id_server.link("sam", "escrow")
    parsed = wire.ActivationLink.parse(link)
    auth = ec.generate_private_key(ec.SECP256R1())
    answers = []
    for _ in range(2):
        with id_server.client() as c:
            body = device.sign(
                id_server.url + "/v1/activate",
                c.nonce(),
                {"code": parsed.code, "keys": [{"id": "auth", "csr": software_csr(auth)}]},
            )
            answers.append(c.call("POST", "/v1/activate", body))
    escrowed = [next(k for k in a["keys"] if k["format"] == "imported") for a in answers]
    assert device.open(escrowed[0]["key"]) == device.open(escrowed[1]["key"])
    assert escrowed[0]["certificate"] == escrowed[1]["certificate"]


def test_devices_never_confirmed_are_deleted_after_the_window(tmp_path: Path, database: str | None) -> None:
    window = 8.0  # generous: the replay below must land inside it even on a slow CI machine
    server = start_server(tmp_path / "data", env={"VSC_SERVER_CONFIRM_TTL": str(int(window))}, database=database)
    try:
        idle, used = DeviceKey.generate(), DeviceKey.generate()
        key = ec.generate_private_key(ec.SECP256R1())
        idle_link = server.link("ivy", "light")
        idle_id = activate(server, idle_link, idle, key)["device"]
        registered = time.monotonic()  # the server stored the device before answering
        used_id = activate(server, server.link("ulla", "light"), used, ec.generate_private_key(ec.SECP256R1()))[
            "device"
        ]
        signed(server, used, used_id, "/v1/status")
        assert activate(server, idle_link, idle, key)["device"] == idle_id  # within the window: replayed
        time.sleep(max(0.0, registered + window + 0.5 - time.monotonic()))
        states = {d["id"]: d["state"] for d in server.devices()}  # the admin's list sweeps
        assert states == {idle_id: "deleted", used_id: "active"}
        late = refusal(server, idle_link, idle, key)
        assert (late.status, late.error) == (404, "unknown_code")
        assert signed(server, idle, idle_id, "/v1/status")["state"] == "deleted"  # the client wipes its card
    finally:
        server.stop()
