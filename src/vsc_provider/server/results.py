"""Checking what a card signed for a request, against the certificate the server issued for that key:
the auth JWS, the JWS over the data, or the detached CMS (docs/protocol.md, "Device calls"). Every
failure is 400 bad_result; nothing here changes state."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from asn1crypto import cms as a_cms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vsc_provider.provisioning import cms, wire
from vsc_provider.provisioning import request_wire as rw
from vsc_provider.server import jose
from vsc_provider.server.errors import ProtocolError

MAX_SIGNATURE = 4 * 1024 * 1024
_CMS_SIGNATURE_ALGORITHMS = {
    "RS256": "sha256_rsa",
    "RS512": "sha512_rsa",
    "PS256": "rsassa_pss",
    "ES256": "sha256_ecdsa",
    "ES384": "sha384_ecdsa",
}


def bad_result(detail: str) -> ProtocolError:
    return ProtocolError(400, "bad_result", detail)


def key_fits(public: Any, alg: str) -> bool:
    """Whether a certified key can sign with `alg` (RSA for RS*/PS256, the alg's curve for ES*)."""
    if alg in rw.RSA_ALGS:
        return isinstance(public, rsa.RSAPublicKey)
    return isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == rw.EC_ALGS.get(alg)


def default_alg(public: Any, digest_length: int | None) -> str | None:
    """The alg a request gets when the RP names none: RS256 (RS512 for a SHA-512 hash) for RSA, ES256 for
    P-256, ES384 for P-384; None for a key no request alg fits."""
    if isinstance(public, rsa.RSAPublicKey):
        return "RS512" if digest_length == 64 else "RS256"
    for alg in rw.EC_ALGS:
        if key_fits(public, alg):
            return alg
    return None


def _compact(token: Any, alg: str, public: Any) -> tuple[dict[str, Any], bytes]:
    """(protected header, payload bytes) of a compact JWS by the card key with exactly `alg`."""
    try:
        header, payload = jose.card_key_compact(token, public, alg, MAX_SIGNATURE)
    except ValueError as exc:
        raise bad_result(str(exc)) from None
    if not key_fits(public, alg):  # jwcrypto refuses these too; the request's alg names the key type
        raise bad_result("the JWS signature does not verify with the card's certificate")
    return header, payload


def check(
    request: dict[str, Any], given: dict[str, Any], display_hash: str, iss: str, signature: Any, cert_der: bytes
) -> None:
    """The card's answer to `request` (its row; `given` the RP's stored input) verifies with the
    certificate; raises bad_result otherwise."""
    public = x509.load_der_x509_certificate(cert_der).public_key()
    alg, request_id = request["alg"], request["id"]
    if request["kind"] == "auth":
        _, payload = _compact(signature, alg, public)
        try:
            claims = json.loads(payload)
        except ValueError:
            raise bad_result("the auth JWS payload is not JSON") from None
        expected = {
            "typ": rw.AUTH_TYP,
            "request": request_id,
            "challenge": given["challenge"],
            "display_hash": display_hash,
            "aud": iss,
        }
        if not isinstance(claims, dict) or any(claims.get(k) != v for k, v in expected.items()):
            raise bad_result("the auth JWS payload is not {typ, request, challenge, display_hash, aud} of this request")
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise bad_result("the auth JWS payload has iat")
        if not request["created"] - rw.IAT_SKEW <= iat <= time.time() + rw.IAT_SKEW:
            raise bad_result("the auth JWS iat is not between the request's creation and now")
    elif request["format"] == "jws":
        header, payload = _compact(signature, alg, public)
        if header.get("vsc_request") != request_id or header.get("vsc_display") != display_hash:
            raise bad_result("the JWS header's vsc_request and vsc_display name this request")
        if not hmac.compare_digest(payload, wire.unb64u(given["data"])):
            raise bad_result("the JWS payload is not the data to sign")
    else:
        if not isinstance(signature, str) or len(signature) > MAX_SIGNATURE:
            raise bad_result("the signature is b64u(DER CMS ContentInfo)")
        hash_name = rw.ALG_HASH[alg]
        digest = wire.unb64u(given["hash"]) if "hash" in given else rw.digest(hash_name, wire.unb64u(given["data"]))
        try:
            signer = cms.verify_signed_data(wire.unb64u(signature), digest, hash_name)
        except ValueError as exc:
            raise bad_result(f"the CMS signature does not verify: {exc}") from None
        if signer != cert_der:
            raise bad_result("the CMS carries another certificate than the answer's")
        # cms checked that the signature algorithm fits the digest and the key; it must also be the one asked
        info = a_cms.ContentInfo.load(wire.unb64u(signature))
        used = info["content"]["signer_infos"][0]["signature_algorithm"]["algorithm"].native
        if used != _CMS_SIGNATURE_ALGORITHMS[alg] or not key_fits(public, alg):
            raise bad_result(f"the CMS is not signed with {alg}")
