"""What the server keeps of the certificates it issues: their notAfter, stored at issue, decides whether a
device is asked to renew (no certificate parsed per call); the CRL is signed once and served as is until a
key is retired."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.server.conftest import BACK_ENDS
from tests.server.idserver import IdServer, light_request, software_csr, start_server
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey


def _activate(server: IdServer, user: str) -> tuple[DeviceKey, str, x509.Certificate]:
    device = DeviceKey.generate()
    keys = [{"id": "auth", "csr": software_csr(ec.generate_private_key(ec.SECP256R1()))}]
    body, client = light_request(server, server.link(user, "light"), device=device, keys=keys)
    with client:
        answer = client.call("POST", "/v1/activate", body)
    cert = x509.load_der_x509_certificate(wire.unb64u(answer["keys"][0]["certificate"]))
    return device, str(answer["device"]), cert


def _status(server: IdServer, device: DeviceKey, device_id: str) -> dict[str, object]:
    with server.client() as c:
        return c.call("POST", "/v1/status", device.sign(server.url + "/v1/status", c.nonce(), {}, kid=device_id))


def _crl(server: IdServer) -> bytes:
    with server.client() as c:
        response = c._http.get("/v1/crl")
    assert response.status_code == 200
    return response.content


@pytest.mark.parametrize("backend", BACK_ENDS)
def test_renewal_is_asked_from_the_not_after_stored_at_issue(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    database = request.getfixturevalue("postgres").database() if backend == "postgresql" else None
    server = start_server(tmp_path / "data", database=database, env={"VSC_SERVER_RENEW_DAYS": "30"})
    try:
        device, device_id, cert = _activate(server, "nora")
        stored = server.query("SELECT not_after FROM keys WHERE device = ?", (device_id,))
        assert stored == [(cert.not_valid_after_utc.timestamp(),)]
        assert _status(server, device, device_id)["renew"] is False  # a year left
        # the stored notAfter is what counts: moved into the window, the device is asked to renew
        server.query("UPDATE keys SET not_after = ? WHERE device = ?", (time.time() + 86400.0, device_id))
        assert _status(server, device, device_id)["renew"] is True
        server.query("UPDATE keys SET not_after = ? WHERE device = ?", (time.time() + 40 * 86400.0, device_id))
        assert _status(server, device, device_id)["renew"] is False
    finally:
        server.stop()


def test_the_crl_is_signed_once_until_a_key_is_retired(id_server: IdServer) -> None:
    _, device_id, cert = _activate(id_server, "carl")
    first = _crl(id_server)
    assert _crl(id_server) == first  # served as signed (a new one would carry a new CRL number)
    id_server.admin("POST", f"/admin/devices/{device_id}/delete")
    after = _crl(id_server)
    assert after != first
    assert x509.load_der_x509_crl(after).get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert _crl(id_server) == after
    generation = id_server.query("SELECT value FROM counters WHERE name = 'revocations'")
    assert generation and int(generation[0][0]) >= 1
