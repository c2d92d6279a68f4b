"""The named curves: one table of their OIDs, the names `cryptography` and OpenSSL give them, and the short
key kinds (p256, p384, ed25519) that users and identity servers name. Which curves a card accepts is its
policy's choice (vsc_provider.token.policy)."""

from __future__ import annotations

from typing import Any

P256 = "1.2.840.10045.3.1.7"
P384 = "1.3.132.0.34"
P521 = "1.3.132.0.35"
ED25519_OID = "1.3.101.112"
ED448_OID = "1.3.101.113"
EDWARDS_OIDS = (ED25519_OID, ED448_OID)

# Named Weierstrass curves by OID, with the name `cryptography` gives them (EllipticCurve.name): every
# curve it offers.
EC_CURVES = {
    P256: "secp256r1",
    P384: "secp384r1",
    P521: "secp521r1",
    "1.2.840.10045.3.1.1": "secp192r1",
    "1.3.132.0.33": "secp224r1",
    "1.3.132.0.10": "secp256k1",
    "1.3.36.3.3.2.8.1.1.7": "brainpoolP256r1",
    "1.3.36.3.3.2.8.1.1.11": "brainpoolP384r1",
    "1.3.36.3.3.2.8.1.1.13": "brainpoolP512r1",
}
# Every name a curve goes by (CKA_EC_PARAMS as a PrintableString, OpenSSL's aliases) -> OID.
CURVE_NAMES = {
    **{name: oid for oid, name in EC_CURVES.items()},
    "prime256v1": P256,
    "prime192v1": "1.2.840.10045.3.1.1",
    "edwards25519": ED25519_OID,
    "ed25519": ED25519_OID,
    "edwards448": ED448_OID,
    "ed448": ED448_OID,
}
# The elliptic key kinds of the provisioning protocol and the CLI.
KINDS = {"p256": P256, "p384": P384, "ed25519": ED25519_OID}


def ec_curve(oid: str) -> Any:
    """The `cryptography` curve object for a supported named-curve OID."""
    from cryptography.hazmat.primitives.asymmetric import ec

    curves: dict[str, type[ec.EllipticCurve]] = {
        "secp256r1": ec.SECP256R1,
        "secp384r1": ec.SECP384R1,
        "secp521r1": ec.SECP521R1,
        "secp192r1": ec.SECP192R1,
        "secp224r1": ec.SECP224R1,
        "secp256k1": ec.SECP256K1,
        "brainpoolP256r1": ec.BrainpoolP256R1,
        "brainpoolP384r1": ec.BrainpoolP384R1,
        "brainpoolP512r1": ec.BrainpoolP512R1,
    }
    return curves[EC_CURVES[oid]]()


def curve_bits(oid: str) -> int:
    """The size of a named curve, from its name (secp384r1 -> 384), without loading `cryptography`."""
    import re

    return int(re.findall(r"\d{3}", EC_CURVES[oid])[0])


def kind_name(kind: str) -> str:
    """A Weierstrass key kind's curve as `cryptography` names it (p256 -> secp256r1)."""
    return EC_CURVES[KINDS[kind]]
