"""Renewal proven by the old keys and the server's renew flag, escrow sealed at rest, two-phase migration,
and PIN change on server-checked cards: each against the real server process."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import (  # noqa: F401
    activate,
    cards,
    certs_of,
    inproc,
    p11_session,
    sign_with,
    verify,
)
from tests.provisioning.test_online_pin import failures, login
from tests.server.conftest import start_beside
from tests.server.idserver import IdServer, light_request, software_csr, start_server
from vsc_provider import api
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.provisioning.http import ServerError
from vsc_provider.server.escrow import MAGIC, EscrowVault

# --- renewal ------------------------------------------------------------------------------------------


def es256_jws(signers: dict[str, ec.EllipticCurvePrivateKey], payload: dict[str, Any]) -> dict[str, Any]:
    body = wire.b64u(wire.canonical(payload))
    out = []
    for kid, key in signers.items():
        protected = wire.b64u(json.dumps({"alg": "ES256", "kid": kid}).encode())
        r, s = decode_dss_signature(key.sign(f"{protected}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
        out.append({"protected": protected, "signature": wire.b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))})
    return {"payload": body, "signatures": out}


def test_renewal_must_be_signed_by_the_certified_old_keys(id_server: IdServer) -> None:
    old = ec.generate_private_key(ec.SECP256R1())
    dev = DeviceKey.generate()
    link = id_server.link("renata", "light")
    body, client = light_request(id_server, link, device=dev, keys=[{"id": "auth", "csr": software_csr(old)}])
    with client:
        first = client.call("POST", "/v1/activate", body)
    device_id = first["device"]
    old_cert = x509.load_der_x509_certificate(wire.unb64u(first["keys"][0]["certificate"]))

    def renew(make: Any) -> dict[str, Any]:
        new = ec.generate_private_key(ec.SECP256R1())
        with id_server.client() as c:
            nonce = c.nonce()
            inner = {"nonce": nonce, "device": device_id, "keys": [{"id": "auth", "csr": software_csr(new)}]}
            payload = make(inner)
            return c.call("POST", "/v1/renew", dev.sign(id_server.url + "/v1/renew", nonce, payload, kid=device_id))

    def refused(make: Any) -> str:
        with pytest.raises(ServerError) as info:
            renew(make)
        assert 400 <= info.value.status < 500
        return info.value.error

    # the device key alone (the old protocol) is no longer enough
    assert refused(lambda inner: {"keys": inner["keys"]}) == "possession_required"
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert refused(lambda inner: {"renewal": es256_jws({"auth": stranger}, inner)}) == "bad_possession"
    assert refused(lambda inner: {"renewal": es256_jws({"other": old}, inner)}) == "unknown_key"
    stale = {"nonce": "not-this-request", "device": device_id, "keys": []}
    assert refused(lambda inner: {"renewal": es256_jws({"auth": old}, {**inner, **stale, "keys": inner["keys"]})}) in (
        "bad_possession",
    )
    result = renew(lambda inner: {"renewal": es256_jws({"auth": old}, inner)})
    assert result["device"] == device_id and len(result["keys"]) == 1
    # the old key is retired: it cannot prove possession for the next renewal
    assert refused(lambda inner: {"renewal": es256_jws({"auth": old}, inner)}) == "bad_possession"
    # and its certificate is revoked as superseded; the new one is not
    crl = _crl(id_server)
    entry = crl.get_revoked_certificate_by_serial_number(old_cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded
    new_cert = x509.load_der_x509_certificate(wire.unb64u(result["keys"][0]["certificate"]))
    assert crl.get_revoked_certificate_by_serial_number(new_cert.serial_number) is None


def test_server_renew_flag_is_recorded_then_acted_on_with_the_pin(id_server: IdServer, inproc: None) -> None:  # noqa: F811
    info = activate(id_server.link("rene"))
    serial = info["serial"]
    before = certs_of(serial)
    device = next(d for d in id_server.devices() if d["user"] == "rene")
    id_server.admin("POST", f"/admin/devices/{device['id']}/renew")
    seen = json.loads(run_vsc("identity", "status", serial).stdout)
    assert seen["renew"] is True
    assert "renewal requested" in run_vsc("card", "list").stdout
    assert next(c for c in cards() if c["serial"] == serial)["renewal_requested"] is True
    assert certs_of(serial) == before  # nothing changes without the PIN
    done = json.loads(run_vsc("identity", "status", serial, "--pin", USER_PIN).stdout)
    assert done.get("renewed") is True
    after = certs_of(serial)
    assert len(after) == 2 and not set(after) & set(before)
    for key_id, cert in after.items():
        verify(cert, sign_with(serial, key_id, b"fresh"), b"fresh")
    assert "renewal requested" not in run_vsc("card", "list").stdout
    assert not next(d for d in id_server.devices() if d["user"] == "rene")["renew"]


# --- escrow at rest -------------------------------------------------------------------------------------


def test_escrowed_keys_are_sealed_in_the_database(id_server: IdServer, inproc: None) -> None:  # noqa: F811
    info = activate(id_server.link("esme", "escrow"))
    key_file = id_server.data / "escrow-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    device = next(d for d in id_server.devices() if d["user"] == "esme")
    rows = id_server.query("SELECT key_id, escrow FROM keys WHERE device = ? AND escrow IS NOT NULL", (device["id"],))
    (key_id, blob), *rest = rows
    assert rest == [] and bytes(blob).startswith(MAGIC)
    with pytest.raises(ValueError):
        serialization.load_der_private_key(bytes(blob), None)
    private = serialization.load_der_private_key(EscrowVault(id_server.data).unseal(device["id"], key_id, blob), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    # the server's key is the one on the card (its certificate's key) ...
    cert_keys = [c.public_key() for c in certs_of(info["serial"]).values()]
    mine = private.public_key().public_numbers()
    assert any(isinstance(k, rsa.RSAPublicKey) and k.public_numbers() == mine for k in cert_keys)
    # ... and none of its secret parts is anywhere in the database files
    numbers = private.private_numbers()
    secrets_ = [n.to_bytes((n.bit_length() + 7) // 8, "big") for n in (numbers.d, numbers.p, numbers.q)]
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for path in id_server.data.glob("server.sqlite*"):
        raw = path.read_bytes()
        assert der not in raw and not any(part in raw for part in secrets_), path


# --- migration ------------------------------------------------------------------------------------------


def _crl(server: IdServer) -> x509.CertificateRevocationList:
    with server.client() as c:
        return x509.load_der_x509_crl(c._http.get("/v1/crl").content)


def test_failed_migration_leaves_the_card_with_server_a_and_success_finalises_a(
    id_server: IdServer,
    tmp_path: Path,
    inproc: None,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    target = start_beside(request, id_server, tmp_path / "b2")
    try:
        info = activate(id_server.link("mia"))
        serial = info["serial"]
        before = certs_of(serial)
        # B does not trust A yet: it refuses the ticket
        move = ("identity", "migrate", serial, "--to", target.url, "--to-pin", target.pin, "--pin", USER_PIN)
        failed = run_vsc(*move, check=False)
        assert failed.returncode != 0 and "bad_ticket" in failed.stderr
        assert {d["user"]: d["state"] for d in id_server.devices()}["mia"] == "active"
        assert target.devices() == []
        assert next(c for c in cards() if c["serial"] == serial)["server"] == id_server.url
        assert certs_of(serial) == before
        crl_before = _crl(id_server)
        assert not any(crl_before.get_revoked_certificate_by_serial_number(c.serial_number) for c in before.values())
        for key_id, cert in before.items():
            verify(cert, sign_with(serial, key_id, b"still A"), b"still A")
        assert json.loads(run_vsc("identity", "status", serial).stdout)["state"] == "active"
        # once B trusts A the same card moves, and only then does A let it go
        run_vsc("server", "trust", "--data", str(target.data), "--peer-data", str(id_server.data))
        run_vsc(*move)
        assert {d["user"]: d["state"] for d in id_server.devices()}["mia"] == "migrated"
        assert [d["state"] for d in target.devices()] == ["active"]
        binding = api.find_card(serial).record.server or {}
        assert binding["url"] == target.url and "release" not in binding
        assert set(certs_of(serial)) == set(before)
        # A's certificates of the card are on A's CRL (superseded) from then on; B's new ones on neither
        after = certs_of(serial)
        crl_a, crl_b = _crl(id_server), _crl(target)
        for key_id, cert in before.items():
            assert after[key_id].serial_number != cert.serial_number
            entry = crl_a.get_revoked_certificate_by_serial_number(cert.serial_number)
            assert entry is not None, key_id
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            assert reason == x509.ReasonFlags.superseded
            for crl in (crl_a, crl_b):
                assert crl.get_revoked_certificate_by_serial_number(after[key_id].serial_number) is None
        # A's copy of the card's SO PIN moved to B: B's administrator can unblock the card
        assert target.query("SELECT so_pin IS NOT NULL FROM devices") in ([(1,)], [(True,)])
        device = target.devices()[0]["id"]
        target.admin("POST", f"/admin/devices/{device}/unblock")
        assert json.loads(run_vsc("identity", "status", serial).stdout)["unblocked"] is True
    finally:
        target.stop()


def test_a_receipt_not_signed_by_the_ticket_target_is_refused(id_server: IdServer) -> None:
    dev = DeviceKey.generate()
    body, client = light_request(id_server, id_server.link("nils", "light"), device=dev)
    with client:
        device_id = client.call("POST", "/v1/activate", body)["device"]
    impostor = DeviceKey.generate()
    with id_server.client() as c:
        nonce = c.nonce()
        ticket = c.call(
            "POST",
            "/v1/migration",
            dev.sign(
                id_server.url + "/v1/migration",
                nonce,
                {"target": "https://127.0.0.1:1", "target_key": DeviceKey.generate().public_jwk()},
                kid=device_id,
            ),
        )["ticket"]
        jti = json.loads(wire.unb64u(ticket.split(".")[1]))["jti"]
        from jwcrypto import jws as jose_jws

        forged = jose_jws.JWS(wire.canonical({"ticket": jti, "device": "x"}))
        forged.add_signature(impostor.jwk, alg="RS256", protected=json.dumps({"alg": "RS256"}))
        nonce = c.nonce()
        with pytest.raises(ServerError) as info:
            c.call(
                "POST",
                "/v1/migration/complete",
                dev.sign(
                    id_server.url + "/v1/migration/complete",
                    nonce,
                    {"receipt": forged.serialize(compact=True)},
                    kid=device_id,
                ),
            )
    assert info.value.error == "bad_receipt"
    assert next(d for d in id_server.devices() if d["id"] == device_id)["state"] == "active"


# --- PIN change on server-checked cards -------------------------------------------------------------------


def test_pin_change_on_a_server_checked_card(id_server: IdServer, inproc: None) -> None:  # noqa: F811
    serial = activate(id_server.link("paula", "online"))["serial"]
    new_pin = "735148"
    wrong = run_vsc("pin", "change", "--card", serial, "--old", "000000", "--new", new_pin, check=False)
    assert wrong.returncode != 0 and "CKR_PIN_INCORRECT" in wrong.stderr
    assert failures(id_server, "paula") == 1  # the wrong old PIN counts on the server
    run_vsc("pin", "change", "--card", serial, "--old", USER_PIN, "--new", new_pin)
    assert failures(id_server, "paula") == 0
    login(serial, new_pin)
    with pytest.raises(CKRError) as old:
        login(serial, USER_PIN)
    assert old.value.rv == C.CKR_PIN_INCORRECT
    assert failures(id_server, "paula") == 1
    login(serial, new_pin)
    assert failures(id_server, "paula") == 0
    # C_SetPIN in-process takes the same path
    with p11_session(serial) as h:
        from vsc_provider.pkcs11 import slots

        slots.set_pin(h, new_pin.encode(), USER_PIN.encode())
    login(serial, USER_PIN)


def test_login_on_an_online_card_records_the_renew_flag_without_changing_keys(
    id_server: IdServer,
    inproc: None,  # noqa: F811
) -> None:
    serial = activate(id_server.link("lorna", "online"))["serial"]
    before = certs_of(serial)
    device = next(d for d in id_server.devices() if d["user"] == "lorna")
    id_server.admin("POST", f"/admin/devices/{device['id']}/renew")
    login(serial, USER_PIN)  # C_Login: the /v1/pin answer carries the flag
    assert next(c for c in cards() if c["serial"] == serial)["renewal_requested"] is True
    assert certs_of(serial) == before
    run_vsc("card", "renew", serial, "--pin", USER_PIN)
    assert next(c for c in cards() if c["serial"] == serial)["renewal_requested"] is False
    assert not set(certs_of(serial)) & set(before)


def test_certificates_near_their_end_are_renewed_at_the_next_contact(
    id_server: IdServer, tmp_path: Path, vsc_home: Path, request: pytest.FixtureRequest
) -> None:
    fresh = activate(id_server.link("yuri", "light"))["serial"]
    assert json.loads(run_vsc("identity", "status", fresh).stdout)["renew"] is False  # a year left
    server = start_beside(request, id_server, tmp_path / "short", env={"VSC_SERVER_CERT_DAYS": "20"})  # 30-day window
    try:
        serial = activate(server.link("eva", "light"))["serial"]
        before = {k: c.serial_number for k, c in certs_of(serial).items()}
        assert json.loads(run_vsc("identity", "status", serial).stdout)["renew"] is True
        assert "renewal requested" in run_vsc("card", "list").stdout  # recorded until the PIN is at hand
        result = json.loads(run_vsc("identity", "status", serial, "--pin", USER_PIN).stdout)
        assert result["renewed"] is True
        after = {k: c.serial_number for k, c in certs_of(serial).items()}
        assert len(after) == len(before) and not set(after.values()) & set(before.values())
    finally:
        server.stop()


def test_near_their_end_certificates_are_renewed_by_the_next_command_with_the_pin(
    database: str | None,
    tmp_path: Path,
    inproc: None,  # noqa: F811
) -> None:
    """No `vsc card renew`: the flag a contact without the PIN records (a C_Login of an online card, `vsc
    identity status` of a light one) is acted on by the next `vsc` command that has the PIN."""
    data = tmp_path / "short"
    server = start_server(data, env={"VSC_SERVER_CERT_DAYS": "20"}, database=database)  # inside the window
    online = activate(server.link("oona", "online"))["serial"]
    light = activate(server.link("lily", "light"))["serial"]
    server.stop()  # back with a year's certificates: renewed cards are then out of the window
    server = start_server(data, port=server.port, database=database)
    try:
        before = {serial: set(certs_of(serial)) for serial in (online, light)}
        login(online, USER_PIN)  # C_Login (in process, as a PKCS#11 host): records the flag, swaps nothing
        assert next(c for c in cards() if c["serial"] == online)["renewal_requested"] is True
        assert set(certs_of(online)) == before[online]
        shown = run_vsc("card", "show", online, "--pin", USER_PIN)
        assert "renewed card" in shown.stderr
        assert not set(certs_of(online)) & before[online]
        assert next(c for c in cards() if c["serial"] == online)["renewal_requested"] is False

        assert "renewed" not in run_vsc("card", "show", light, "--pin", USER_PIN).stderr  # no contact yet
        assert json.loads(run_vsc("identity", "status", light).stdout)["renew"] is True
        assert "renewed card" in run_vsc("card", "show", light, "--pin", USER_PIN).stderr
        assert not set(certs_of(light)) & before[light]

        renewed = {serial: set(certs_of(serial)) for serial in (online, light)}
        for serial in (online, light):  # the new certificates are a year long: nothing more to do
            assert json.loads(run_vsc("identity", "status", serial).stdout)["renew"] is False
            assert "renewed" not in run_vsc("card", "show", serial, "--pin", USER_PIN).stderr
            assert set(certs_of(serial)) == renewed[serial]
    finally:
        server.stop()
