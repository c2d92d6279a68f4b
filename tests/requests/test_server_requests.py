"""Requests end to end with the real identity server: an RP creates them (POST /rp/v1/requests), the device
answers through `vsc requests` and `vsc agent`, the server verifies, and so does `cryptography` here.

The relying party (`rp`) and the helpers are in conftest.py and real.py."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

from asn1crypto import cms as a_cms
from cryptography import x509

from tests.conftest import USER_PIN, run_vsc
from tests.requests.agent_process import agent
from tests.requests.checks import verify_jws, verify_signature
from tests.requests.real import DATA, activated, create, result
from tests.server.idserver import IdServer
from vsc_provider.provisioning import wire


def test_sign_jws_approved_is_verified_by_the_server_and_here(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    user, _ = activated(id_server)
    made = create(
        id_server,
        rp,
        user,
        kind="sign",
        alg="ES256",
        data=wire.b64u(DATA),
        metadata=[{"type": "text", "label": "Transfer", "data": "120.00 EUR to ACME"}],
    )
    rid = made["id"]
    listed = json.loads(run_vsc("requests", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [rid] and listed[0]["rp"] == "ACME"
    assert "120.00 EUR to ACME" in run_vsc("requests", "show", rid).stdout
    run_vsc("requests", "approve", rid, "--pin", USER_PIN)
    doc = result(id_server, rp, rid)
    assert doc["state"] == "APPROVED" and doc["result"]["verified"] is True
    cert = x509.load_der_x509_certificate(wire.unb64u(doc["result"]["certificate"]))
    header, payload = verify_jws(doc["result"]["signature"], cert.public_key())
    assert payload == DATA and header["vsc_request"] == rid


def test_auth_and_reject(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    user, _ = activated(id_server)
    auth = create(id_server, rp, user, kind="auth", alg="RS256")
    run_vsc("requests", "approve", auth["id"], "--pin", USER_PIN)
    doc = result(id_server, rp, auth["id"])
    assert doc["state"] == "APPROVED" and doc["result"]["verified"] is True
    cert = x509.load_der_x509_certificate(wire.unb64u(doc["result"]["certificate"]))
    _, payload = verify_jws(doc["result"]["signature"], cert.public_key())
    claims = json.loads(payload)
    assert claims["challenge"] == auth["challenge"] and claims["request"] == auth["id"]
    assert claims["aud"] == id_server.url
    refused = create(id_server, rp, user, kind="sign", data=wire.b64u(DATA))
    run_vsc("requests", "reject", refused["id"])
    assert result(id_server, rp, refused["id"])["state"] == "REJECTED"


def test_detached_cms_over_the_rps_hash(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    user, _ = activated(id_server)
    digest = hashlib.sha256(DATA).digest()
    made = create(id_server, rp, user, kind="sign", alg="ES256", format="cms", hash=wire.b64u(digest))
    run_vsc("requests", "approve", made["id"], "--pin", USER_PIN)
    doc = result(id_server, rp, made["id"])
    assert doc["state"] == "APPROVED" and doc["result"]["verified"] is True
    signed = a_cms.ContentInfo.load(wire.unb64u(doc["result"]["signature"]))["content"]
    signer = signed["signer_infos"][0]
    attrs = signer["signed_attrs"]
    assert next(a["values"][0].native for a in attrs if a["type"].native == "message_digest") == digest
    cert = x509.load_der_x509_certificate(wire.unb64u(doc["result"]["certificate"]))
    der_attrs = b"\x31" + attrs.dump()[1:]
    verify_signature(cert.public_key(), "ES256", signer["signature"].native, der_attrs, "sha256", der_ecdsa=True)


def test_expired_request_cannot_be_approved(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    user, _ = activated(id_server)
    made = create(id_server, rp, user, kind="sign", data=wire.b64u(DATA), ttl=10)
    time.sleep(11)
    out = run_vsc("requests", "approve", made["id"], "--pin", USER_PIN, check=False)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert result(id_server, rp, made["id"])["state"] == "EXPIRED"


def test_server_checked_pin_wrong_then_right(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    user, _ = activated(id_server, "online")
    made = create(id_server, rp, user, kind="auth")
    out = run_vsc("requests", "approve", made["id"], "--pin", "000000", check=False)
    assert out.returncode == 1 and "tries left on the server" in out.stderr
    run_vsc("requests", "approve", made["id"], "--pin", USER_PIN)
    assert result(id_server, rp, made["id"])["state"] == "APPROVED"


def test_several_cards_and_requests_are_independent(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    from vsc_provider.requests.client import CardRequests

    users = [activated(id_server)[0] for _ in range(3)]
    made = [
        create(id_server, rp, u, kind="sign", data=wire.b64u(DATA + bytes([i])))["id"] for u in users for i in range(3)
    ]
    source = CardRequests()
    assert {r.id for r in source.pending()} == set(made)
    for i, rid in enumerate(made):
        if i % 3 == 2:
            source.reject(rid)
        else:
            source.approve(rid, USER_PIN)
    states = [result(id_server, rp, rid)["state"] for rid in made]
    assert states == ["APPROVED", "APPROVED", "REJECTED"] * 3


def test_agent_sees_a_new_request_pushed(id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path) -> None:
    user, _ = activated(id_server)
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(lambda: "watching 1 card" in a.text(), 20, "start")
        time.sleep(0.5)
        rid = create(id_server, rp, user, kind="sign", data=wire.b64u(DATA))["id"]
        a.wait_for(lambda: f"request {rid}" in a.text(), 5, "the pushed request")
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(15) == 0
