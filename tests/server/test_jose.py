"""The server's JOSE checks and PIN throttle on their own: card-key signatures of every key type a profile
allows (made here with `cryptography`, as a card would make them), and the one PIN-delay formula."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from vsc_provider.provisioning import wire
from vsc_provider.server import jose, throttle
from vsc_provider.server.errors import ProtocolError

PAYLOAD = wire.b64u(wire.canonical({"nonce": "n", "device": "d"}))


def jws_signature(key: Any, alg: str, payload: str = PAYLOAD) -> tuple[str, str]:
    """(protected, signature) of one RFC 7515 signature by `key`, ECDSA as r||s (RFC 7518 3.4)."""
    protected = wire.b64u(json.dumps({"alg": alg, "kid": "auth"}).encode())
    data = f"{protected}.{payload}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        digest = hashes.SHA256() if alg == "RS256" else hashes.SHA512()
        return protected, wire.b64u(key.sign(data, padding.PKCS1v15(), digest))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256() if size == 32 else hashes.SHA384())))
        return protected, wire.b64u(r.to_bytes(size, "big") + s.to_bytes(size, "big"))
    return protected, wire.b64u(key.sign(data))


KEYS = {
    "RS256": lambda: rsa.generate_private_key(65537, 2048),
    "RS512": lambda: rsa.generate_private_key(65537, 2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_card_key_signatures_of_every_allowed_type_verify(alg: str) -> None:
    key = KEYS[alg]()
    protected, signature = jws_signature(key, alg)
    assert jose.card_key_signed(key.public_key(), protected, PAYLOAD, signature)
    other = wire.b64u(wire.canonical({"nonce": "m", "device": "d"}))
    assert not jose.card_key_signed(key.public_key(), protected, other, signature)
    assert not jose.card_key_signed(KEYS[alg]().public_key(), protected, PAYLOAD, signature)


def test_card_key_signatures_refuse_an_alg_that_does_not_fit_the_key() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    # an ES384 header over a P-256 key, and an RSA alg over an EC key: refused before any verification
    protected, signature = jws_signature(p256, "ES384")
    assert not jose.card_key_signed(p256.public_key(), protected, PAYLOAD, signature)
    protected, signature = jws_signature(p256, "RS256")
    assert not jose.card_key_signed(p256.public_key(), protected, PAYLOAD, signature)
    rsa_key = rsa.generate_private_key(65537, 2048)
    protected, _ = jws_signature(rsa_key, "RS256")
    none_header = wire.b64u(json.dumps({"alg": "none", "kid": "auth"}).encode())
    assert not jose.card_key_signed(rsa_key.public_key(), none_header, PAYLOAD, "")


def test_ecdsa_card_signatures_are_exactly_r_and_s() -> None:
    """r||s with extra leading zeros names the same integers: RFC 7518 fixes the length, so it is refused."""
    key = ec.generate_private_key(ec.SECP256R1())
    protected, signature = jws_signature(key, "ES256")
    raw = wire.unb64u(signature)
    padded = wire.b64u(b"\0" + raw[:32] + b"\0" + raw[32:])
    assert not jose.card_key_signed(key.public_key(), protected, PAYLOAD, padded)


def compact_answer(key: Any, header: dict[str, Any], payload: bytes) -> str:
    """A compact JWS as a card answers a request: RS*/PS256 or ECDSA r||s, made with `cryptography`."""
    protected = wire.b64u(json.dumps(header).encode())
    data = f"{protected}.{wire.b64u(payload)}".encode()
    alg = header["alg"]
    if alg == "PS256":
        signature = key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    elif alg.startswith("RS"):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA512() if alg == "RS512" else hashes.SHA256())
    else:
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256() if size == 32 else hashes.SHA384())))
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return f"{protected}.{wire.b64u(payload)}.{wire.b64u(signature)}"


ANSWER_KEYS = {
    "RS256": KEYS["RS256"],
    "RS512": KEYS["RS512"],
    "PS256": KEYS["RS256"],
    "ES256": KEYS["ES256"],
    "ES384": KEYS["ES384"],
}


@pytest.mark.parametrize("alg", sorted(ANSWER_KEYS))
def test_request_answers_verify_with_exactly_the_asked_alg(alg: str) -> None:
    key = ANSWER_KEYS[alg]()
    token = compact_answer(key, {"alg": alg, "vsc_request": "r1"}, b"data")
    header, payload = jose.card_key_compact(token, key.public_key(), alg, 4096)
    assert (header["vsc_request"], payload) == ("r1", b"data")
    protected, body, signature = token.split(".")
    raw = wire.unb64u(signature)
    refused = {
        "tampered signature": f"{protected}.{body}.{wire.b64u(bytes([raw[0] ^ 1]) + raw[1:])}",
        "other payload": f"{protected}.{wire.b64u(b'other')}.{signature}",
        "other key": compact_answer(ANSWER_KEYS[alg](), {"alg": alg}, b"data"),
        "padded base64url": f"{protected}.{body}.{signature}==",
        "too long": token + "A" * 4096,
        "no signature part": f"{protected}.{body}",
    }
    accepted = []
    for name, bad in refused.items():
        try:
            jose.card_key_compact(bad, key.public_key(), alg, 4096)
        except ValueError:
            continue
        accepted.append(name)
    assert not accepted


def test_request_answers_refuse_another_alg_none_crit_and_b64() -> None:
    rsa_key, p256 = KEYS["RS256"](), KEYS["ES256"]()
    # signed correctly, but with another alg than the request asked for (same key type, or another curve)
    for key, used, asked in ((rsa_key, "RS512", "RS256"), (rsa_key, "PS256", "RS256"), (p256, "ES256", "ES384")):
        token = compact_answer(key, {"alg": used}, b"data")
        with pytest.raises(ValueError, match=f"names alg {asked}"):
            jose.card_key_compact(token, key.public_key(), asked, 4096)
    # an ES384 header over a P-256 key: the header names the asked alg, the key cannot have made it
    token = compact_answer(p256, {"alg": "ES256"}, b"data")
    protected = wire.b64u(json.dumps({"alg": "ES384"}).encode())
    with pytest.raises(ValueError, match="does not verify"):
        jose.card_key_compact(protected + token[token.index(".") :], p256.public_key(), "ES384", 4096)
    none = wire.b64u(json.dumps({"alg": "none"}).encode()) + "." + wire.b64u(b"data") + "."
    with pytest.raises(ValueError, match="names alg RS256"):
        jose.card_key_compact(none, rsa_key.public_key(), "RS256", 4096)
    for extra in ({"crit": ["exp"], "exp": 1}, {"b64": False, "crit": ["b64"]}, {"b64": True}):
        token = compact_answer(rsa_key, {"alg": "RS256", **extra}, b"data")
        with pytest.raises(ValueError, match="no crit, no b64"):
            jose.card_key_compact(token, rsa_key.public_key(), "RS256", 4096)


def test_request_answers_ecdsa_signatures_are_exactly_r_and_s() -> None:
    key = KEYS["ES256"]()
    protected, body, signature = compact_answer(key, {"alg": "ES256"}, b"data").split(".")
    raw = wire.unb64u(signature)
    padded = wire.b64u(b"\0" + raw[:32] + b"\0" + raw[32:])
    with pytest.raises(ValueError, match="does not verify"):
        jose.card_key_compact(f"{protected}.{body}.{padded}", key.public_key(), "ES256", 4096)


def test_device_jwks_are_public_rsa_of_at_least_2048_bits() -> None:
    small = jose.jose_jwk.JWK.from_pyca(rsa.generate_private_key(65537, 1024).public_key())
    with pytest.raises(ProtocolError) as refused:
        jose.rsa_public_jwk(small.export_public(as_dict=True))
    assert refused.value.error == "weak_key"
    private = jose.jose_jwk.JWK.from_pyca(rsa.generate_private_key(65537, 2048))
    with pytest.raises(ProtocolError) as refused:
        jose.rsa_public_jwk(private.export_private(as_dict=True))
    assert refused.value.error == "bad_key"


def test_server_pin_delays_follow_the_token_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    """No wait for the first two wrong PINs, then the base doubling per wrong PIN, never more than an hour."""
    monkeypatch.setenv("VSC_SERVER_PIN_DELAY", "1.5")
    policy = throttle.policy()
    assert [policy.delay_after(n) for n in range(6)] == [0.0, 0.0, 0.0, 1.5, 3.0, 6.0]
    assert policy.delay_after(40) == 3600.0
    assert policy.max_tries == 10
    monkeypatch.delenv("VSC_SERVER_PIN_DELAY")
    assert throttle.policy().delay_after(4) == 2.0


def test_pin_proof_is_keyed_by_the_verifier_and_bound_to_the_nonce() -> None:
    verifier = bytes(range(32))
    proof = wire.pin_proof(verifier, "nonce-1")
    # the bytes devices in the field send: HMAC-SHA256(verifier, "vsc-pin-proof:" + nonce)
    assert proof.hex() == "dbae3a2cffe08e3d851e87cbac7c66216f147c0aeaf6231f4534c9a28156ab6b"
    assert proof == wire.pin_proof(verifier, "nonce-1")
    assert proof != wire.pin_proof(verifier, "nonce-2")
    assert proof != wire.pin_proof(bytes(32), "nonce-1")
