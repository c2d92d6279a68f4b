"""TPM attestation of devices (docs/attestation.md): at activation a device whose card is sealed to a TPM sends
the public key of a non-exportable TPM signing key and a JWS by it over its device key and the request's
nonce; the server registers that key with the device and, from then on, refuses the device's lifecycle calls
(wire.TPM_ATTESTED_CALLS) unless they carry a fresh JWS by the same key."""

from __future__ import annotations

import hmac
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws

from vsc_provider.provisioning import wire
from vsc_provider.server.db import Device
from vsc_provider.server.errors import ProtocolError

MAX_TOKEN = 4096


def public_key(data: Any) -> dict[str, str]:
    """A TPM key sent at activation: a public P-256 JWK (400 `bad_tpm_key` otherwise), as it is stored."""
    if not isinstance(data, dict) or data.get("kty") != "EC" or data.get("crv") != "P-256" or "d" in data:
        raise ProtocolError(400, "bad_tpm_key", "tpm_key is a public P-256 JWK")
    jwk = {"kty": "EC", "crv": "P-256", "x": data.get("x"), "y": data.get("y")}
    try:
        x, y = (wire.unb64u(str(jwk[c])) for c in ("x", "y"))
        if len(x) != 32 or len(y) != 32:
            raise ValueError("coordinates are 32 bytes")
        curve = ec.SECP256R1()
        ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve).public_key()
    except ValueError:
        raise ProtocolError(400, "bad_tpm_key", "tpm_key is not a P-256 point") from None
    return {k: str(v) for k, v in jwk.items()}


def check(jwk: dict[str, Any], payload: dict[str, Any], device_thumbprint: str, nonce: str) -> None:
    """The request's `tpm_attestation`: a compact JWS (ES256, typ vsc-tpm-attestation) by the TPM key over
    {"device": the device key's thumbprint, "nonce": this request's nonce}; 403 otherwise."""
    token = payload.get("tpm_attestation")
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise ProtocolError(
            403, "tpm_attestation_required", "this device's calls carry an attestation by its registered TPM key"
        )
    checker = jose_jws.JWS()
    checker.allowed_algs = ["ES256"]
    try:
        checker.deserialize(token)
        checker.verify(jose_jwk.JWK(**jwk))
        claims = json.loads(checker.payload)
        typ = checker.jose_header.get("typ")
    except Exception:
        raise ProtocolError(
            403, "bad_tpm_attestation", "the attestation is not signed by this device's TPM key"
        ) from None
    if (
        typ != wire.TPM_ATTESTATION_TYP
        or not isinstance(claims, dict)
        or not hmac.compare_digest(str(claims.get("device")), device_thumbprint)
        or claims.get("nonce") != nonce
    ):
        raise ProtocolError(403, "bad_tpm_attestation", "the TPM attestation is for another device key or request")


def at_activation(payload: dict[str, Any], device_thumbprint: str, nonce: str) -> dict[str, str] | None:
    """The TPM key a new device registers (checked: it signed this request's attestation), or None."""
    if "tpm_key" not in payload:
        return None
    jwk = public_key(payload["tpm_key"])
    check(jwk, payload, device_thumbprint, nonce)
    return jwk


def on_call(dev: Device, path: str, payload: dict[str, Any], device_thumbprint: str, nonce: str) -> None:
    """A registered device's call: checked against its TPM key when it has one and the call is attested."""
    if dev.tpm_key is not None and path in wire.TPM_ATTESTED_CALLS:
        check(dev.tpm_key, payload, device_thumbprint, nonce)


def same_key(registered: dict[str, Any] | None, sent: dict[str, Any] | None) -> bool:
    """Whether a replayed activation names the TPM key the first one registered (or, both, none)."""
    if registered is None or sent is None:
        return registered is sent
    return bool(jose_jwk.JWK(**registered).thumbprint() == jose_jwk.JWK(**sent).thumbprint())
