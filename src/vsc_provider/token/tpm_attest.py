"""A card's attestation key held by the machine's TPM 2.0 (issue 14): an ECDSA P-256 signing key made inside
the TPM under the owner hierarchy's storage key, non-exportable by the TPM's own rules (fixedTPM, fixedParent,
sensitiveDataOrigin). Its public and private parts (the private one encrypted by the TPM for itself) live in
the card's server binding; only the TPM that made it loads it, so a copied store cannot sign with it.

The key signs compact JWS (ES256) that the provisioning layer builds; the server checks them with the public
key it registered at activation (docs/attestation.md)."""

from __future__ import annotations

import json
from typing import Any

from jwcrypto.common import base64url_encode as _b64u

from vsc_provider.token import tpm_seal
from vsc_provider.token.tpm_seal import TpmError

__all__ = ["TpmError", "create", "public_jwk", "sign_es256"]


def create() -> dict[str, Any]:
    """A new TPM signing key: {"public", "private"} (hex of the TPM's marshalled structures) and its "jwk"."""
    tpm_seal.require_tss()
    from tpm2_pytss.constants import TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE

    attrs = (
        TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.SIGN_ENCRYPT
    )
    template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=attrs)
    with tpm_seal.connect() as (ectx, primary):
        private, public = ectx.create(primary, TPM2B_SENSITIVE_CREATE(), template)[:2]
    record = {"public": bytes(public.marshal()).hex(), "private": bytes(private.marshal()).hex()}
    return {**record, "jwk": public_jwk(record)}


def _public(record: dict[str, Any]) -> Any:
    from tpm2_pytss.types import TPM2B_PUBLIC

    try:
        return TPM2B_PUBLIC.unmarshal(bytes.fromhex(record["public"]))[0]
    except (KeyError, TypeError, ValueError) as exc:
        raise TpmError(f"the card's TPM attestation key is damaged: {exc}") from None


def public_jwk(record: dict[str, Any]) -> dict[str, str]:
    """The key's public half as an EC JWK (what the server registers)."""
    tpm_seal.require_tss()
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    key = load_der_public_key(_public(record).to_der())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TpmError("the card's TPM attestation key is not an EC key")
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64u(numbers.x.to_bytes(32, "big")),
        "y": _b64u(numbers.y.to_bytes(32, "big")),
    }


def sign_es256(record: dict[str, Any], typ: str, claims: dict[str, Any]) -> str:
    """A compact JWS (ES256, r||s as RFC 7518; header `typ` as given) over the claims, signed inside the TPM."""
    tpm_seal.require_tss()
    from cryptography.hazmat.primitives import hashes
    from tpm2_pytss.constants import TPM2_ALG, TPM2_RH, TPM2_ST
    from tpm2_pytss.types import TPM2B_DIGEST, TPM2B_PRIVATE, TPMT_SIG_SCHEME, TPMT_TK_HASHCHECK

    public = _public(record)
    try:
        private = TPM2B_PRIVATE.unmarshal(bytes.fromhex(record["private"]))[0]
    except (KeyError, TypeError, ValueError) as exc:
        raise TpmError(f"the card's TPM attestation key is damaged: {exc}") from None
    header = _b64u(json.dumps({"alg": "ES256", "typ": typ}).encode())
    body = _b64u(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    digest = hashes.Hash(hashes.SHA256())
    digest.update(f"{header}.{body}".encode())
    scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
    scheme.details.any.hashAlg = TPM2_ALG.SHA256
    # a ticket for a digest the TPM did not hash itself: allowed for an unrestricted signing key
    ticket = TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL)
    with tpm_seal.connect() as (ectx, primary):
        obj = ectx.load(primary, private, public)
        try:
            signature = ectx.sign(obj, TPM2B_DIGEST(digest.finalize()), scheme, ticket)
        finally:
            ectx.flush_context(obj)
    r = bytes(signature.signature.ecdsa.signatureR).rjust(32, b"\0")
    s = bytes(signature.signature.ecdsa.signatureS).rjust(32, b"\0")
    return f"{header}.{body}.{_b64u(r + s)}"
