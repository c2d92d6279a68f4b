"""What the server keeps on disk: a private data directory, and device secrets (PIN verifiers, server
secrets) sealed, so a copy of the database alone offers nothing to guess a PIN against."""

from __future__ import annotations

import secrets
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.server.idserver import IdServer, software_csr, start_server
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey, jwe_to_server
from vsc_provider.provisioning.http import ServerError


def _online_activation(server: IdServer, device: DeviceKey, verifier: bytes) -> dict[str, Any]:
    with server.client() as info:
        jwks = info.call("GET", "/v1/server")["jwks"]
    code = wire.ActivationLink.parse(server.link("olga", "online")).code
    key = rsa.generate_private_key(65537, 2048)
    payload = {
        "code": code,
        "keys": [{"id": "auth", "csr": software_csr(key)}],
        "pin_verifier": jwe_to_server(jwks, verifier),
    }
    with server.client() as c:
        return c.call("POST", "/v1/activate", device.sign(server.url + "/v1/activate", c.nonce(), payload))


def _pin(server: IdServer, device: DeviceKey, device_id: str, verifier: bytes) -> bytes:
    with server.client() as c:
        nonce = c.nonce()
        payload = {"proof": wire.b64u(wire.pin_proof(verifier, nonce))}
        answer = c.call("POST", "/v1/pin", device.sign(server.url + "/v1/pin", nonce, payload, kid=device_id))
    return device.open(answer["secret"])


def _disk(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data.glob("server.sqlite*")))


def test_device_secrets_are_sealed_and_files_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # made by someone else, readable by all: the server closes it
    server = start_server(data)
    try:
        device, verifier = DeviceKey.generate(), secrets.token_bytes(32)
        first = _online_activation(server, device, verifier)
        secret = device.open(first["secret"])
        assert _pin(server, device, first["device"], verifier) == secret
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for path in data.rglob("*"):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        on_disk = _disk(data)
        assert verifier not in on_disk and secret not in on_disk
    finally:
        server.stop()
    # an earlier version's clear-text row: sealed at the next start, and still the same PIN
    with sqlite3.connect(data / "server.sqlite") as db:
        db.execute(
            "UPDATE devices SET pin_verifier = ?, server_secret = ? WHERE id = ?", (verifier, secret, first["device"])
        )
    (data / "server.sqlite").chmod(0o644)
    assert verifier in _disk(data)
    server = start_server(data)
    try:
        assert verifier not in _disk(data) and secret not in _disk(data)
        assert stat.S_IMODE((data / "server.sqlite").stat().st_mode) == 0o600
        assert _pin(server, device, first["device"], verifier) == secret
    finally:
        server.stop()


def test_device_secrets_are_sealed_in_the_database(id_server: IdServer) -> None:
    device, verifier = DeviceKey.generate(), secrets.token_bytes(32)
    first = _online_activation(id_server, device, verifier)
    secret = device.open(first["secret"])
    stored = id_server.query("SELECT pin_verifier, server_secret FROM devices WHERE id = ?", (first["device"],))
    assert stored and all(bytes(v).startswith(b"vsc-sealed-1:") for v in stored[0])
    assert verifier not in bytes(stored[0][0]) and secret not in bytes(stored[0][1])
    assert _pin(id_server, device, first["device"], verifier) == secret


def test_signed_requests_name_this_server(id_server: IdServer) -> None:
    device, verifier = DeviceKey.generate(), secrets.token_bytes(32)
    device_id = _online_activation(id_server, device, verifier)["device"]
    for url in ("https://elsewhere.example/v1/status", id_server.url.replace("127.0.0.1", "localhost") + "/v1/status"):
        with id_server.client() as c, pytest.raises(ServerError) as info:
            c.call("POST", "/v1/status", device.sign(url, c.nonce(), {}, kid=device_id))
        assert (info.value.status, info.value.error) == (400, "bad_url")
    with id_server.client() as c:
        body = device.sign(id_server.url + "/v1/status", c.nonce(), {}, kid=device_id)
        assert c.call("POST", "/v1/status", body)["state"] == "active"
