"""Bounds on what a client can make the server do: nonces cost nothing to issue and work once, requests per
client address are rate limited, wrong activation codes are throttled, migration tickets per device capped."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.server.conftest import BACK_ENDS
from tests.server.idserver import IdServer, light_request, software_csr, start_server
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.provisioning.http import ServerError


def _spent(server: IdServer) -> int:
    return int(server.query("SELECT COUNT(*) FROM spent_nonces")[0][0])


def _device(server: IdServer) -> tuple[DeviceKey, str]:
    device = DeviceKey.generate()
    keys = [{"id": "auth", "csr": software_csr(ec.generate_private_key(ec.SECP256R1()))}]
    body, client = light_request(server, server.link("lim", "light"), device=device, keys=keys)
    with client:
        return device, str(client.call("POST", "/v1/activate", body)["device"])


def _status(server: IdServer, device: DeviceKey, device_id: str, nonce: str) -> None:
    with server.client() as c:
        c.call("POST", "/v1/status", device.sign(server.url + "/v1/status", nonce, {}, kid=device_id))


def test_nonces_are_stateless_and_spent_once(id_server: IdServer, tmp_path: Path) -> None:
    device, device_id = _device(id_server)
    before = _spent(id_server)
    with id_server.client() as c:
        nonces = [c.nonce() for _ in range(300)]
    assert len(set(nonces)) == 300 and _spent(id_server) == before  # issuing wrote nothing
    _status(id_server, device, device_id, nonces[0])
    assert _spent(id_server) == before + 1
    forged = wire.b64u(secrets.token_bytes(40))
    other = start_server(tmp_path / "other")
    try:
        with other.client() as c:
            foreign = c.nonce()  # made by another server's key
    finally:
        other.stop()
    # one character changed in the middle (the last ones carry padding bits: changing them may change nothing)
    middle = len(nonces[1]) // 2
    tampered = nonces[1][:middle] + ("B" if nonces[1][middle] == "A" else "A") + nonces[1][middle + 1 :]
    for bad in (nonces[0], forged, foreign, tampered):
        with pytest.raises(ServerError) as info:
            _status(id_server, device, device_id, bad)
        assert (info.value.status, info.value.error) == (400, "bad_nonce")
    _status(id_server, device, device_id, nonces[2])


def _database(request: pytest.FixtureRequest, backend: str) -> str | None:
    return request.getfixturevalue("postgres").database() if backend == "postgresql" else None


@pytest.mark.parametrize("backend", BACK_ENDS)
def test_requests_per_address_are_rate_limited(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    database = _database(request, backend)
    server = start_server(tmp_path / "data", env={"VSC_SERVER_RATE_LIMIT": "0.5,6"}, database=database)
    try:
        with server.client() as c:
            answers = []
            for _ in range(12):
                response = c._http.get("/v1/nonce")
                answers.append(response.status_code)
            assert 429 in answers and answers[:3] == [200, 200, 200]
            response = c._http.get("/v1/nonce")
            assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"] == "rate_limited"
    finally:
        server.stop()


@pytest.mark.parametrize("backend", BACK_ENDS)
def test_wrong_activation_codes_are_throttled(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    server = start_server(
        tmp_path / "data", env={"VSC_SERVER_CODE_LIMIT": "0.01,10"}, database=_database(request, backend)
    )
    try:
        good = wire.ActivationLink.parse(server.link("gus", "light")).code
        with server.client() as c:
            for _ in range(10):
                with pytest.raises(ServerError) as info:
                    c.call("POST", "/v1/offer", {"code": secrets.token_urlsafe(18)})
                assert info.value.status == 404
            with pytest.raises(ServerError) as info:
                c.call("POST", "/v1/offer", {"code": good})  # even a good code waits now
            assert (info.value.status, info.value.error) == (429, "too_many_codes")
    finally:
        server.stop()
    # a good code never counts
    server = start_server(
        tmp_path / "data2", env={"VSC_SERVER_CODE_LIMIT": "0.01,2"}, database=_database(request, backend)
    )
    try:
        good = wire.ActivationLink.parse(server.link("gus", "light")).code
        with server.client() as c:
            for _ in range(5):
                assert c.call("POST", "/v1/offer", {"code": good})["user"] == "gus"
    finally:
        server.stop()


def test_open_migration_tickets_per_device_are_capped(id_server: IdServer) -> None:
    device, device_id = _device(id_server)
    payload = {"target": "https://other.example", "target_key": DeviceKey.generate().public_jwk()}

    def ticket() -> None:
        with id_server.client() as c:
            body = device.sign(id_server.url + "/v1/migration", c.nonce(), payload, kid=device_id)
            c.call("POST", "/v1/migration", body)

    for _ in range(3):
        ticket()
    with pytest.raises(ServerError) as info:
        ticket()
    assert (info.value.status, info.value.error) == (429, "too_many_tickets")
