"""What a public key says about itself in PKCS#11 terms: its key type and type-specific attributes, its
SubjectPublicKeyInfo, and the CKA_ID that ties it to its private key and certificate.

`cryptography` and asn1crypto are imported where used: these modules load at every C_Initialize and their
start-up time and memory count (a host that only lists slots never needs them).
"""

from __future__ import annotations

from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.curves import CURVE_NAMES, ED448_OID, ED25519_OID
from vsc_provider.token.ec_params import octet_string, oid_der


def spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_values(public_key: Any) -> tuple[int, dict[int, A.Value]]:
    """(CKK_ type, type-specific attributes) of a public key, shared by public and private key objects."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return C.CKK_RSA, {
            C.CKA_MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"),
            C.CKA_MODULUS_BITS: public_key.key_size,
            C.CKA_PUBLIC_EXPONENT: numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"),
            C.CKA_PUBLIC_KEY_INFO: spki(public_key),
        }
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return C.CKK_EC, {
            C.CKA_EC_PARAMS: oid_der(CURVE_NAMES[public_key.curve.name]),
            C.CKA_EC_POINT: octet_string(point),
            C.CKA_PUBLIC_KEY_INFO: spki(public_key),
        }
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        oid = ED25519_OID if isinstance(public_key, ed25519.Ed25519PublicKey) else ED448_OID
        return C.CKK_EC_EDWARDS, {
            C.CKA_EC_PARAMS: oid_der(oid),
            C.CKA_EC_POINT: octet_string(raw),
            C.CKA_PUBLIC_KEY_INFO: spki(public_key),
        }
    from vsc_provider.token import dsa_dh, pqc

    if pqc.is_pq(public_key):
        return pqc.key_values(public_key)
    if dsa_dh.is_dsa_dh(public_key):
        return dsa_dh.key_values(public_key)
    raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "unsupported public key type")


def key_id_for(public_key: Any) -> bytes:
    """A CKA_ID clients can match across key, public key and certificate: SHA-1 of the public key bits."""
    import hashlib

    from asn1crypto import keys as asn1_keys

    from vsc_provider.token import dsa_dh, pqc

    if pqc.is_pq(public_key):  # asn1crypto does not know their algorithms; the bits are the raw key
        return hashlib.sha1(pqc.public_value(public_key)).digest()  # noqa: S324 - an identifier
    if dsa_dh.is_dsa_dh(public_key):  # nor PKCS #3 DH's: the public value y, as for DSA its bits hold
        return hashlib.sha1(dsa_dh.public_value(public_key)).digest()  # noqa: S324 - an identifier
    info = asn1_keys.PublicKeyInfo.load(spki(public_key))
    return hashlib.sha1(bytes(info["public_key"].contents[1:])).digest()  # noqa: S324 - an identifier
