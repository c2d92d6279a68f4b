"""The server's JOSE, all through jwcrypto: device request JWSs, possession signatures by card keys,
compact JWSs it signs (migration tickets, receipts) or checks (attestations, tickets, receipts), and JWEs.

Refusals are ProtocolErrors with the protocol's error codes (docs/protocol.md); checks that are not JOSE
(url, nonce, which device) are the caller's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from jwcrypto import jwe as jose_jwe
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws

from vsc_provider.provisioning import request_wire as rw
from vsc_provider.provisioning import wire
from vsc_provider.server.errors import ProtocolError
from vsc_provider.token import curves

# what a JWS by a card key may use, by key kind (RFC 7518); an ECDSA signature is r||s of the request
# protocol's sizes (jwcrypto splits whatever it gets in two)
_CARD_KEY_ALGS = {
    "rsa": ("RS256", "RS512"),
    curves.kind_name("p256"): ("ES256",),
    curves.kind_name("p384"): ("ES384",),
    "ed25519": ("EdDSA",),
}
_ECDSA_LENGTHS = {alg: 2 * size for alg, size in rw.ECDSA_SIZES.items()}  # r||s
ATTESTATION_ALGS = ("RS256", "RS512", "ES256", "ES384")


def load_protocol_key(path: Path) -> jose_jwk.JWK:
    """The server's JOSE key (made on first start): signs tickets and receipts, decrypts JWEs to the server."""
    if not path.exists():
        key = jose_jwk.JWK.generate(kty="RSA", size=3072)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.export_private())
    key = jose_jwk.JWK.from_json(path.read_text())
    key["kid"] = key.thumbprint()
    return key


def protected_header(body: Any) -> dict[str, Any]:
    """The protected header of a device's flattened JWS, before its signature is checked: allowed alg,
    no crit or b64."""
    if not isinstance(body, dict) or set(body) != {"protected", "payload", "signature"}:
        raise ProtocolError(400, "malformed_jws", "the body is a flattened JWS: protected, payload, signature")
    if not all(isinstance(v, str) for v in body.values()):
        raise ProtocolError(400, "malformed_jws", "JWS members are base64url strings")
    try:
        header = wire.sound_json(json.loads(wire.unb64u(body["protected"])))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(400, "malformed_jws", "the protected header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError(400, "malformed_jws", "the protected header is not a JSON object")
    if header.get("alg") not in wire.JWS_ALGS:
        raise ProtocolError(400, "bad_alg", f"alg must be one of {', '.join(wire.JWS_ALGS)}")
    if "crit" in header or "b64" in header:
        raise ProtocolError(400, "malformed_jws", "crit and b64 are not supported")
    return header


def verified_payload(body: dict[str, Any], key: jose_jwk.JWK, alg: str) -> bytes:
    """The payload of a device's flattened JWS once its signature verifies with the device key."""
    token = jose_jws.JWS()
    token.allowed_algs = list(wire.JWS_ALGS)
    try:
        token.deserialize(json.dumps(body))
        token.verify(key, alg=alg)
    except Exception:
        raise ProtocolError(401, "bad_signature", "the JWS signature does not verify with the key") from None
    return bytes(token.payload)


def json_object(payload: bytes) -> dict[str, Any]:
    try:
        data = wire.sound_json(json.loads(payload))
    except (ValueError, RecursionError):
        raise ProtocolError(400, "malformed_jws", "the payload is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(400, "malformed_jws", "the payload is not a JSON object")
    return data


def rsa_public_jwk(data: dict[str, Any]) -> jose_jwk.JWK:
    """A device key (or another server's protocol key) sent as a JWK: public RSA of at least MIN_RSA_BITS."""
    if data.get("kty") != "RSA" or not isinstance(data.get("n"), str) or not isinstance(data.get("e"), str):
        raise ProtocolError(400, "bad_key", "device keys are RSA JWKs")
    if any(k in data for k in ("d", "p", "q", "dp", "dq", "qi")):
        raise ProtocolError(400, "bad_key", "never send a private key")
    try:
        bits = int.from_bytes(wire.unb64u(data["n"]), "big").bit_length()
        key = jose_jwk.JWK(kty="RSA", n=data["n"], e=data["e"])
    except Exception:
        raise ProtocolError(400, "bad_key", "malformed RSA JWK") from None
    if bits < wire.MIN_RSA_BITS:
        raise ProtocolError(400, "weak_key", f"device keys have at least {wire.MIN_RSA_BITS} bits")
    return key


def card_key_signed(public: Any, protected: str, payload: str, signature: str) -> bool:
    """Whether one signature of a general-serialization JWS (RFC 7515 7.2.1) is by this card key, with an
    alg that fits the key's type (the card key types the profiles allow)."""
    if isinstance(public, rsa.RSAPublicKey):
        kind = "rsa"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        kind = public.curve.name
    elif isinstance(public, ed25519.Ed25519PublicKey):
        kind = "ed25519"
    else:
        return False
    try:
        _by_card_key(public, _CARD_KEY_ALGS.get(kind, ()), protected, payload, signature)
    except Exception:
        return False
    return True


def _by_card_key(public: Any, algs: tuple[str, ...], protected: str, payload: str, signature: str) -> bytes:
    """The payload of one JWS signature by this card key with one of `algs`; raises (any exception) if not."""
    alg = json.loads(wire.unb64u(protected)).get("alg")
    if alg in _ECDSA_LENGTHS and len(wire.unb64u(signature)) != _ECDSA_LENGTHS[alg]:
        raise ValueError("an ECDSA JWS signature is r||s of the curve's size")
    token = jose_jws.JWS()
    token.allowed_algs = list(algs)
    token.deserialize(json.dumps({"protected": protected, "payload": payload, "signature": signature}))
    token.verify(jose_jwk.JWK.from_pyca(public))
    return bytes(token.payload)


def card_key_compact(token: Any, public: Any, alg: str, max_length: int) -> tuple[dict[str, Any], bytes]:
    """(protected header, payload) of a compact JWS (RFC 7515 7.1) by this card key with exactly `alg`: a
    request's answer. Raises ValueError with the reason when it is not one."""
    if not isinstance(token, str) or len(token) > max_length or token.count(".") != 2:
        raise ValueError("the signature is a compact JWS")
    protected, payload, signature = token.split(".")
    try:
        header = json.loads(wire.unb64u(protected))
        for part in (payload, signature):
            wire.unb64u(part)  # strict base64url: no padding, no other alphabet
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the JWS parts are not base64url (JSON header)") from None
    if not isinstance(header, dict) or header.get("alg") != alg or "crit" in header or "b64" in header:
        raise ValueError(f"the JWS header names alg {alg} (no crit, no b64)")
    try:
        return header, _by_card_key(public, (alg,), protected, payload, signature)
    except Exception:
        raise ValueError("the JWS signature does not verify with the card's certificate") from None


_SIGNERS: dict[str, rsa.RSAPrivateKey] = {}


def _signer(key: jose_jwk.JWK) -> rsa.RSAPrivateKey:
    """The protocol key as a `cryptography` key, made once: jwcrypto rebuilds (and re-checks) the RSA key
    at every signature, ~20 ms for 3072 bits, and every request document is one signature."""
    private = _SIGNERS.get(key.thumbprint())
    if private is None:
        made = key.get_op_key("sign")
        assert isinstance(made, rsa.RSAPrivateKey)
        private = _SIGNERS[key.thumbprint()] = made
    return private


def sign_compact(key: jose_jwk.JWK, claims: dict[str, Any]) -> str:
    """A compact RS256 JWS (RFC 7515 7.1) by the server's protocol key over canonical JSON claims;
    header {"alg": "RS256", "kid": <the key's thumbprint>}."""
    header = wire.b64u(json.dumps({"alg": "RS256", "kid": key["kid"]}, separators=(",", ":")).encode())
    signing_input = f"{header}.{wire.b64u(wire.canonical(claims))}"
    signature = _signer(key).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{wire.b64u(signature)}"


def compact_claims(token: str, key: jose_jwk.JWK, algs: tuple[str, ...] = wire.JWS_ALGS) -> Any:
    """The JSON claims of a compact JWS signed by `key`; raises (any exception) when it is not."""
    checker = jose_jws.JWS()
    checker.allowed_algs = list(algs)
    checker.deserialize(token)
    checker.verify(key)
    return json.loads(checker.payload)


def unverified_claims(token: str) -> Any:
    """The claims of a compact JWS before its signature is checked (to find the key that checks it)."""
    checker = jose_jws.JWS()
    checker.deserialize(token)
    return json.loads(checker.objects["payload"])


def jwe_to(jwk: dict[str, Any], plaintext: bytes) -> str:
    """A compact JWE to a device's RSA key."""
    token = jose_jwe.JWE(plaintext, protected=json.dumps({"alg": wire.JWE_ALG, "enc": wire.JWE_ENC}))
    token.add_recipient(jose_jwk.JWK(kty="RSA", n=jwk["n"], e=jwk["e"]))
    return str(token.serialize(compact=True))


def jwe_open(key: jose_jwk.JWK, compact: Any) -> bytes:
    """The plaintext of a compact JWE a device sent to the server's protocol key."""
    if not isinstance(compact, str) or len(compact) > 8192:
        raise ProtocolError(400, "bad_jwe", "expected a compact JWE")
    token = jose_jwe.JWE()
    token.allowed_algs = [wire.JWE_ALG, wire.JWE_ENC]
    try:
        token.deserialize(compact, key=key)
    except Exception:
        raise ProtocolError(400, "bad_jwe", "the JWE does not decrypt with the server's key") from None
    return bytes(token.payload)
