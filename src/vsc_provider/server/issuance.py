"""Certifying a device's keys: the public keys its CSRs prove, and the certificates (or escrowed imported
keys) the server issues for a profile's key requests. Activation, replay and renewal share it."""

from __future__ import annotations

from hashlib import sha256
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from vsc_provider.provisioning import wire
from vsc_provider.server import jose
from vsc_provider.server.db import NewKey
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.profiles import KeyRequest
from vsc_provider.server.state import IdentityServer, Verified
from vsc_provider.token import curves


def public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def spki_hash(spki_der: bytes) -> str:
    """How a migration ticket names a key: base64url SHA-256 of its DER SubjectPublicKeyInfo."""
    return wire.b64u(sha256(spki_der).digest())


def key_matches(public_key: Any, kind: str) -> bool:
    if kind.startswith("rsa"):
        return isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == int(kind[3:])
    if kind in ("p256", "p384"):
        want = curves.kind_name(kind)
        return isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == want
    return kind == "ed25519" and isinstance(public_key, ed25519.Ed25519PublicKey)


def csr_keys(v: Verified, requests: list[KeyRequest], allowed_spki: set[str] | None) -> dict[str, Any]:
    """The public key of each requested (device-generated) key, proven by its self-signed CSR."""
    wanted = {r.id: r for r in requests if r.format != "imported"}
    items = v.payload.get("keys")
    if not isinstance(items, list) or len(items) != len(wanted):
        raise ProtocolError(400, "bad_keys", f"expected {len(wanted)} key(s): {', '.join(sorted(wanted))}")
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("id") not in wanted or item["id"] in out:
            raise ProtocolError(400, "bad_keys", "each key entry is {id, csr} for a requested key, once")
        req = wanted[item["id"]]
        try:
            csr = x509.load_der_x509_csr(wire.unb64u(str(item.get("csr"))))
            valid = csr.is_signature_valid
            public = csr.public_key()
        except (ValueError, TypeError):
            raise ProtocolError(400, "bad_csr", f"key {req.id}: not a DER PKCS#10 request") from None
        if not valid:
            raise ProtocolError(400, "bad_csr_signature", f"key {req.id}: the CSR's signature does not verify")
        if not key_matches(public, req.type):
            raise ProtocolError(400, "wrong_key_type", f"key {req.id} must be {req.type}")
        if allowed_spki is not None and spki_hash(public_der(public)) not in allowed_spki:
            raise ProtocolError(400, "unknown_key", f"key {req.id} is not one the migration ticket names")
        out[req.id] = public
    return out


def issue(
    srv: IdentityServer,
    device_id: str,
    user: str,
    jwk: dict[str, Any],
    requests: list[KeyRequest],
    publics: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[NewKey]]:
    """The answer's key entries and the rows to store: a certificate for each key not in raw-key format,
    and for an imported key a new RSA key, sent to the device in a JWE and escrowed sealed."""
    response, rows = [], []
    for req in requests:
        entry: dict[str, Any] = {"id": req.id, "usage": req.usage, "format": req.format}
        escrow = None
        if req.format == "imported":
            private = rsa.generate_private_key(65537, int(req.type[3:]))
            public = private.public_key()
            der = private.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            entry["key"] = jose.jwe_to(jwk, der)
            escrow = srv.escrow.seal(device_id, req.id, der)
        else:
            public = publics[req.id]
        cert_der = None
        if req.format != "jwk":
            cert = srv.authority.issue(public, user, req.usage, server_url=srv.public_url())
            cert_der = cert.public_bytes(serialization.Encoding.DER)
            entry["certificate"] = wire.b64u(cert_der)
        rows.append(NewKey(device_id, req.id, req.usage, req.format, public_der(public), cert_der, escrow))
        response.append(entry)
    return response, rows
