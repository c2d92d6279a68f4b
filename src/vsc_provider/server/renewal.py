"""/v1/renew: new certificates for a device's generated keys, asked with proof that it holds the current
ones (a JWS over the new CSRs signed by every current card key)."""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vsc_provider.provisioning import wire
from vsc_provider.server import issuance, jose
from vsc_provider.server.db import Device
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.state import IdentityServer, Verified


def possession(srv: IdentityServer, v: Verified, dev: Device) -> dict[str, Any]:
    """The renewal's inner JWS (general JSON serialization): its payload, once every current card key
    has signed it. Each signature is checked against the key the server certified (its certificate,
    or the registered public key for raw-key formats)."""
    jws = v.payload.get("renewal")
    if not isinstance(jws, dict) or not isinstance(jws.get("payload"), str):
        raise ProtocolError(400, "possession_required", "renewal carries a JWS signed by the current card keys")
    signatures = jws.get("signatures")
    if not isinstance(signatures, list) or len(signatures) > 16:
        raise ProtocolError(400, "possession_required", "renewal.signatures is a list, one per current key")
    current = {k["key_id"]: k for k in srv.db.active_keys(dev.id) if k["format"] != "imported"}
    signed: set[str] = set()
    for item in signatures:
        if not isinstance(item, dict) or not isinstance(item.get("protected"), str):
            raise ProtocolError(400, "malformed_jws", "each signature has protected and signature")
        try:
            header = json.loads(wire.unb64u(item["protected"]))
            wire.unb64u(str(item.get("signature")))
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(400, "malformed_jws", "a signature's header or value is not base64url") from None
        kid = header.get("kid") if isinstance(header, dict) else None
        if kid not in current:
            raise ProtocolError(400, "unknown_key", "a renewal signature names no current key of this device")
        key = current[kid]
        public = (
            x509.load_der_x509_certificate(key["cert"]).public_key()
            if key["cert"]
            else serialization.load_der_public_key(key["spki"])
        )
        if not jose.card_key_signed(public, item["protected"], jws["payload"], str(item.get("signature"))):
            raise ProtocolError(401, "bad_possession", f"the signature by current key {kid} does not verify")
        signed.add(str(kid))
    if signed != set(current):
        raise ProtocolError(401, "bad_possession", "every current key signs the renewal")
    try:
        inner = json.loads(wire.unb64u(jws["payload"]))
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(400, "malformed_jws", "the renewal payload is not base64url JSON") from None
    if not isinstance(inner, dict) or inner.get("nonce") != v.header["nonce"] or inner.get("device") != dev.id:
        raise ProtocolError(400, "bad_possession", "the renewal payload names this request's nonce and device")
    return inner


def renew(srv: IdentityServer, body: Any) -> dict[str, Any]:
    v, dev = srv.verify_active(body, "/v1/renew")
    inner = possession(srv, v, dev)
    profile = srv.profiles[dev.profile]
    requests = [r for r in profile.keys if r.format != "imported"]
    publics = issuance.csr_keys(Verified(v.header, inner, v.key, dev), requests, None)
    keys, rows = issuance.issue(srv, dev.id, dev.user, dev.jwk, requests, publics)
    srv.db.renew_keys(dev.id, rows)
    return {"device": dev.id, "keys": keys}
