"""What implementers read about an identity: the card's server binding (never its secrets), each key's usages,
and its public key as a JWK (RFC 7517, `kid` = the CKA_ID in hex, with its RFC 7638 thumbprint) and as PEM.

`vsc card show --json` and `vsc key export-public` print these; all of it is public (no PIN needed), except
the usages of private keys, listed only when the caller logged in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vsc_provider import api
from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.engine import Card

# The binding fields shown, and under which name. Everything else in a binding (the sealed device key, the
# PIN verifier's salt, the activation's leftovers) stays inside.
BINDING_FIELDS = {
    "url": "server",
    "user": "user",
    "profile": "profile",
    "device": "device",
    "state": "state",
    "pin_check": "pin_check",
    "offline": "offline",
    "activated": "activated",
}
USAGE_ATTRIBUTES = (
    (C.CKA_SIGN, "sign"),
    (C.CKA_VERIFY, "verify"),
    (C.CKA_SIGN_RECOVER, "sign-recover"),
    (C.CKA_VERIFY_RECOVER, "verify-recover"),
    (C.CKA_ENCRYPT, "encrypt"),
    (C.CKA_DECRYPT, "decrypt"),
    (C.CKA_WRAP, "wrap"),
    (C.CKA_UNWRAP, "unwrap"),
    (C.CKA_DERIVE, "derive"),
    (C.CKA_ENCAPSULATE, "encapsulate"),
    (C.CKA_DECAPSULATE, "decapsulate"),
)
FORMATS = ("pem", "der", "jwk")


def binding(card: Card) -> dict[str, Any] | None:
    """The card's server binding as implementers may see it, or None for a local card."""
    rec = card.record.server
    if not rec:
        return None
    shown: dict[str, Any] = {name: rec[field] for field, name in BINDING_FIELDS.items() if field in rec}
    shown["keys"] = [
        {"id": k.get("id"), "usage": k.get("usage"), "format": k.get("format"), "key_id": k.get("key_id")}
        for k in rec.get("keys", [])
    ]
    return shown


def pem(spki: bytes) -> str:
    from asn1crypto import pem as asn1_pem

    return str(asn1_pem.armor("PUBLIC KEY", spki).decode())


def jwk(spki: bytes, kid: str) -> tuple[dict[str, Any], str] | None:
    """The public JWK (with `kid`) and its RFC 7638 thumbprint, or None for a key type JOSE has no form for."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from jwcrypto import jwk as jose_jwk

    try:
        key = jose_jwk.JWK.from_pyca(serialization.load_der_public_key(spki))
    except (ValueError, TypeError, UnsupportedAlgorithm, jose_jwk.InvalidJWKValue):
        return None
    data = dict(key.export_public(as_dict=True))
    data["kid"] = kid
    return data, str(key.thumbprint())


@dataclass(frozen=True)
class PublicKey:
    id: str  # CKA_ID, hex
    label: str
    key_type: str | None
    spki: bytes
    usages: tuple[str, ...]
    server_usage: str | None  # auth / sign / encryption, for a key the card's server issued

    def to_json(self) -> dict[str, Any]:
        as_jwk = jwk(self.spki, self.id)
        return {
            "id": self.id,
            "label": self.label,
            "key_type": self.key_type,
            "usages": list(self.usages),
            "server_usage": self.server_usage,
            "jwk": as_jwk[0] if as_jwk else None,
            "jwk_thumbprint": as_jwk[1] if as_jwk else None,
            "pem": pem(self.spki),
        }


def _label(obj: Any) -> str:
    return str(A.decode(C.CKA_LABEL, obj.attrs.get(C.CKA_LABEL, b"")))


def public_keys(card: Card, with_private: bool = False) -> list[PublicKey]:
    """Every key pair's public key (from its public-key object, else from a private key that names it when
    private objects are shown), with the usages of both halves that are shown."""
    server_usage = {k.get("key_id"): k.get("usage") for k in (card.record.server or {}).get("keys", [])}
    shown = [o for o in card.objects.values() if with_private or not o.private]
    halves: dict[bytes, list[Any]] = {}
    for obj in shown:
        if obj.klass in (C.CKO_PUBLIC_KEY, C.CKO_PRIVATE_KEY):
            halves.setdefault(obj.attrs.get(C.CKA_ID, b""), []).append(obj)
    found: list[PublicKey] = []
    for key_id, objs in halves.items():
        objs.sort(key=lambda o: (o.klass != C.CKO_PUBLIC_KEY, o.handle))  # the public key object first
        spki = next((o.attrs[C.CKA_PUBLIC_KEY_INFO] for o in objs if o.attrs.get(C.CKA_PUBLIC_KEY_INFO)), None)
        if spki is None:
            continue
        usages = tuple(name for attr, name in USAGE_ATTRIBUTES if any(o.bool(attr) for o in objs))
        key_type = A.get_ulong(objs[0].attrs, C.CKA_KEY_TYPE)
        found.append(
            PublicKey(
                id=key_id.hex(),
                label=_label(objs[0]),
                key_type=api.KEY_TYPE_NAMES.get(key_type) if key_type is not None else None,
                spki=bytes(spki),
                usages=usages,
                server_usage=server_usage.get(key_id.hex()),
            )
        )
    return sorted(found, key=lambda k: (k.label, k.id))


def card_metadata(ref: str, pin: str | None = None) -> dict[str, Any]:
    """`vsc card show --json`: the card and its objects, its binding, its public keys."""
    info = api.list_objects(ref, pin)  # checks the PIN when one is given
    card = api.find_card(ref)
    data = info.to_json()
    data["binding"] = binding(card)
    data["keys"] = [k.to_json() for k in public_keys(card, with_private=pin is not None)]
    return data


def _certificate_key(card: Card, selector: str) -> tuple[bytes, str] | None:
    """The SubjectPublicKeyInfo and hex CKA_ID of the certificate labelled `selector` (or with that id)."""
    from cryptography import x509

    from vsc_provider.token import key_info as token_keys

    for obj in card.objects.values():
        key_id = obj.attrs.get(C.CKA_ID, b"").hex()
        if obj.klass == C.CKO_CERTIFICATE and selector in (_label(obj), key_id):
            return token_keys.spki(x509.load_der_x509_certificate(obj.attrs[C.CKA_VALUE]).public_key()), key_id
    return None


def export_public(ref: str, selector: str, fmt: str = "pem") -> bytes:
    """The public key labelled `selector` (or with that hex CKA_ID) as PEM, DER or a JWK; a certificate's
    when the card has only the certificate."""
    if fmt not in FORMATS:
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"the format is one of {', '.join(FORMATS)}")
    card = api.find_card(ref)
    matches = [k for k in public_keys(card) if selector in (k.label, k.id)]
    if len({k.spki for k in matches}) > 1:
        ids = ", ".join(k.id for k in matches)
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"several keys are labelled {selector!r} (ids {ids}): use the hex id")
    found = (matches[0].spki, matches[0].id) if matches else _certificate_key(card, selector)
    if found is None:
        raise CKRError(C.CKR_OBJECT_HANDLE_INVALID, f"no public key {selector!r} on card {card.label!r}")
    spki, kid = found
    if fmt == "der":
        return spki
    if fmt == "pem":
        return pem(spki).encode()
    as_jwk = jwk(spki, kid)
    if as_jwk is None:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, f"key {selector!r} has no JWK form (RFC 7517/8037 types only)")
    return (json.dumps(as_jwk[0], indent=2) + "\n").encode()
