"""The device refuses a request, before showing anything, unless the server's protocol key signed it for this
card's server and device, and it is fresh (requests/verify.py); tampering with anything shown breaks it."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws

from vsc_provider.provisioning import wire
from vsc_provider.requests.verify import RefusedRequest, pending_request

URL = "https://idp.example:8443"
DEVICE = "dev-1"
KEY = jose_jwk.JWK.generate(kty="RSA", size=2048)
OTHER = jose_jwk.JWK.generate(kty="RSA", size=2048)
JWKS = {"keys": [{**KEY.export_public(as_dict=True), "kid": KEY.thumbprint()}]}
BINDING = {"url": URL, "device": DEVICE}


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "typ": "vsc-request",
        "id": "r1",
        "iss": URL,
        "device": DEVICE,
        "kind": "sign",
        "rp": {"name": "Shop"},
        "key": "sign",
        "alg": "ES256",
        "format": "cms",
        "hash": wire.b64u(hashlib.sha256(b"doc").digest()),
        "metadata": [
            {"type": "text", "label": "Order", "data": "Pay 12.50 EUR"},
            {"type": "raw", "label": "Bytes", "data": wire.b64u(b"\x00\x01\xff")},
            {"type": "image", "label": "Logo", "data": wire.b64u(b"\x89PNG\r\n\x1a\nxx")},
        ],
        "branding": {"name": "IdP", "colour": "#123456"},
        "iat": now,
        "exp": now + 300,
    }
    base.update(extra)
    return base


def sign(payload: dict[str, Any] | bytes, key: jose_jwk.JWK = KEY, alg: str = "RS256", kid: str | None = None) -> str:
    body = payload if isinstance(payload, bytes) else wire.canonical(payload)
    token = jose_jws.JWS(body)
    header = {"alg": alg, "kid": kid or key.thumbprint()}
    token.add_signature(key, alg=alg, protected=json.dumps(header))
    return str(token.serialize(compact=True))


def refused(compact: str) -> str:
    with pytest.raises(RefusedRequest) as info:
        pending_request(compact, JWKS, BINDING, "SERIAL", "Card")
    return str(info.value)


def test_a_good_request_becomes_a_pending_request_with_the_hash_of_its_payload_bytes() -> None:
    compact = sign(claims())
    request = pending_request(compact, JWKS, BINDING, "SERIAL", "Card")
    payload = wire.unb64u(compact.split(".")[1])
    assert request.display_hash == wire.b64u(hashlib.sha256(payload).digest())
    assert (request.id, request.card, request.card_label) == ("r1", "SERIAL", "Card")
    assert (request.kind, request.rp) == ("sign", "Shop")
    assert (request.alg, request.format, request.branding["colour"]) == ("ES256", "cms", "#123456")
    assert [(m.type, m.label, m.data) for m in request.metadata] == [
        ("text", "Order", b"Pay 12.50 EUR"),
        ("raw", "Bytes", b"\x00\x01\xff"),
        ("image", "Logo", b"\x89PNG\r\n\x1a\nxx"),
    ]
    assert request.document["hash"] == claims()["hash"]
    # an auth request is always a JWS, whatever format it names
    auth = pending_request(sign(claims(kind="auth", format="cms", challenge="abc")), JWKS, BINDING, "S", "C")
    assert auth.format == "jws"


def test_a_request_signed_by_another_key_is_refused() -> None:
    assert "not the server's protocol key" in refused(sign(claims(), OTHER))
    # the other key claiming the server key's kid: the signature does not verify
    assert "does not verify" in refused(sign(claims(), OTHER, kid=KEY.thumbprint()))


def test_wrong_alg_or_not_a_jws_is_refused() -> None:
    assert "RS256" in refused(sign(claims(), alg="RS512"))
    hmac_key = jose_jwk.JWK.generate(kty="oct", size=256)
    assert "RS256" in refused(sign(claims(), hmac_key, alg="HS256", kid=KEY.thumbprint()))
    assert "compact JWS" in refused("not-a-jws")


def test_wrong_issuer_device_or_typ_is_refused() -> None:
    assert "not this card's server" in refused(sign(claims(iss="https://evil.example")))
    assert "another device" in refused(sign(claims(device="dev-2")))
    assert "typ" in refused(sign(claims(typ="vsc-auth")))


def test_expired_and_future_requests_are_refused_with_their_id() -> None:
    now = int(time.time())
    with pytest.raises(RefusedRequest) as info:
        pending_request(sign(claims(exp=now - 1)), JWKS, BINDING, "S", "C")
    assert str(info.value) == "request r1 expired" and info.value.request_id == "r1"
    assert "future" in refused(sign(claims(iat=now + 120)))
    # within the clock skew allowed
    pending_request(sign(claims(iat=now + 30)), JWKS, BINDING, "S", "C")


def test_tampered_metadata_is_refused() -> None:
    compact = sign(claims())
    head, body, sig = compact.split(".")
    doc = json.loads(wire.unb64u(body))
    doc["metadata"][0]["data"] = "Pay 9999 EUR"
    assert "does not verify" in refused(f"{head}.{wire.b64u(wire.canonical(doc))}.{sig}")
    # the same bytes re-encoded differently (no canonical JSON) also change what is signed
    loose = json.dumps(json.loads(wire.unb64u(body)), indent=1).encode()
    assert "does not verify" in refused(f"{head}.{wire.b64u(loose)}.{sig}")


def test_malformed_metadata_is_refused_even_when_signed() -> None:
    assert "known type" in refused(sign(claims(metadata=[{"type": "video", "label": "x", "data": "y"}])))
    assert "base64url" in refused(sign(claims(metadata=[{"type": "pdf", "label": "x", "data": "+/=="}])))
    assert "kind or alg" in refused(sign(claims(alg="HS256")))
