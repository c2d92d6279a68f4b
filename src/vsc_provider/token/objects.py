"""Token objects and the attribute sets that clients expect for keys, certificates, data and profiles.

`cryptography` and asn1crypto are imported where used: the module loads at every C_Initialize and its
start-up time and memory count (a host that only lists slots never needs them).

Attributes are kept as raw PKCS#11 bytes (see vsc_provider.ck.attributes). Key material is never an
attribute: token objects keep it sealed under the card's data key, session objects in memory.
"""

from __future__ import annotations

import builtins
from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.curves import (
    CURVE_NAMES,
    EC_CURVES,
    ED448_OID,
    ED25519_OID,
    EDWARDS_OIDS,
    ec_curve,  # noqa: F401 - the curve table moved; callers still use O.ec_curve
)


class TokenObject:
    """One object as this process sees it. `secret` is sealed key material (token objects); `material` is
    plaintext key material for session objects, which never leave the process."""

    __slots__ = ("attrs", "handle", "klass", "material", "owner", "private", "secret", "uid")

    def __init__(
        self,
        handle: int,
        uid: bytes,
        attrs: dict[int, bytes],
        secret: bytes | None = None,
        material: bytes | None = None,
        owner: int = 0,
    ) -> None:
        self.handle = handle
        self.uid = uid
        self.attrs = attrs
        self.secret = secret
        self.material = material
        self.owner = owner  # session handle for session objects, 0 for token objects
        self.klass = A.get_ulong(attrs, C.CKA_CLASS, C.CKO_DATA)
        self.private = A.get_bool(attrs, C.CKA_PRIVATE)

    def bool(self, attr: int, default: bool = False) -> bool:
        return A.get_bool(self.attrs, attr, default)

    def ulong(self, attr: int) -> int | None:
        return A.get_ulong(self.attrs, attr)

    @property
    def is_token(self) -> builtins.bool:
        return self.owner == 0

    @property
    def key_type(self) -> int | None:
        return self.ulong(C.CKA_KEY_TYPE)

    def matches(self, template: dict[int, bytes]) -> builtins.bool:
        attrs = self.attrs
        for attr, value in template.items():
            if attrs.get(attr) != value:
                return False
        return True


# Post-quantum key types (PKCS#11 3.2), whose algorithms live in vsc_provider.token.pqc.
PQ_KEY_TYPES = frozenset({C.CKK_ML_DSA, C.CKK_ML_KEM})
# DSA and Diffie-Hellman (compatible cards only), in vsc_provider.token.dsa_dh.
DSA_DH_KEY_TYPES = frozenset({C.CKK_DSA, C.CKK_DH})

# Attributes a caller may never read back, whatever the object says.
# The private parts of an RSA key.
RSA_PRIVATE_PARTS = frozenset(
    {C.CKA_PRIVATE_EXPONENT, C.CKA_PRIME_1, C.CKA_PRIME_2, C.CKA_EXPONENT_1, C.CKA_EXPONENT_2, C.CKA_COEFFICIENT}
)
NEVER_READABLE = frozenset({*RSA_PRIVATE_PARTS, C.CKA_SEED})  # CKA_SEED: of ML-DSA and ML-KEM private keys

# Attributes that may change after creation (C_SetAttributeValue), by class.
MODIFIABLE = frozenset(
    {
        C.CKA_LABEL,
        C.CKA_ID,
        C.CKA_SUBJECT,
        C.CKA_START_DATE,
        C.CKA_END_DATE,
        C.CKA_APPLICATION,
        C.CKA_OBJECT_ID,
        C.CKA_ALWAYS_AUTHENTICATE,
        C.CKA_ENCRYPT,
        C.CKA_DECRYPT,
        C.CKA_SIGN,
        C.CKA_VERIFY,
        C.CKA_SIGN_RECOVER,
        C.CKA_VERIFY_RECOVER,
        C.CKA_WRAP,
        C.CKA_UNWRAP,
        C.CKA_DERIVE,
        C.CKA_SENSITIVE,  # only false -> true (checked by the caller)
        C.CKA_EXTRACTABLE,  # only true -> false
        C.CKA_CERTIFICATE_CATEGORY,
        C.CKA_TRUSTED,  # only the SO may set it (checked by the engine)
        C.CKA_WRAP_WITH_TRUSTED,  # only false -> true
        C.CKA_ENCAPSULATE,
        C.CKA_DECAPSULATE,
    }
)


def oid_der(oid: str) -> bytes:
    from asn1crypto import core as asn1_core

    return bytes(asn1_core.ObjectIdentifier(oid).dump())


def curve_from_params(params: bytes) -> str:
    """CKA_EC_PARAMS (a named-curve OID, or a PrintableString name as some clients send) -> dotted OID."""
    from asn1crypto import core as asn1_core
    from asn1crypto import keys as asn1_keys

    try:
        parsed = asn1_keys.ECDomainParameters.load(params)
        if parsed.name == "named":
            oid = parsed.chosen.dotted
            if oid in EC_CURVES or oid in EDWARDS_OIDS:
                return oid
    except (ValueError, TypeError):
        pass
    try:
        name = asn1_core.PrintableString.load(params).native
        if name in CURVE_NAMES:
            return CURVE_NAMES[name]
    except (ValueError, TypeError):
        pass
    try:
        oid = asn1_core.ObjectIdentifier.load(params).dotted
        if oid in EC_CURVES or oid in EDWARDS_OIDS:
            return oid
    except (ValueError, TypeError):
        pass
    raise CKRError(C.CKR_CURVE_NOT_SUPPORTED, "unsupported or malformed CKA_EC_PARAMS")


def octet_string(raw: bytes) -> bytes:
    from asn1crypto import core as asn1_core

    return bytes(asn1_core.OctetString(raw).dump())


def unwrap_octet_string(raw: bytes) -> bytes:
    """CKA_EC_POINT as DER OCTET STRING, tolerating clients that send the bare point."""
    from asn1crypto import core as asn1_core

    try:
        parsed = asn1_core.OctetString.load(raw)
        inner = parsed.native
        if isinstance(inner, bytes) and len(parsed.dump()) == len(raw):
            return inner
    except ValueError:
        pass
    return raw


def spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _storage(klass: int, token: bool, private: bool, label: str) -> dict[int, A.Value]:
    return {
        C.CKA_CLASS: klass,
        C.CKA_TOKEN: token,
        C.CKA_PRIVATE: private,
        C.CKA_LABEL: label,
        C.CKA_MODIFIABLE: True,
        C.CKA_COPYABLE: True,
        C.CKA_DESTROYABLE: True,
    }


def _key_common(key_type: int, key_id: bytes, local: bool, gen_mech: int | None) -> dict[int, A.Value]:
    return {
        C.CKA_KEY_TYPE: key_type,
        C.CKA_ID: key_id,
        C.CKA_START_DATE: b"",
        C.CKA_END_DATE: b"",
        C.CKA_DERIVE: False,
        C.CKA_LOCAL: local,
        C.CKA_KEY_GEN_MECHANISM: C.CK_UNAVAILABLE_INFORMATION if gen_mech is None else gen_mech,
        C.CKA_SUBJECT: b"",
    }


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


def _key_pair_half(
    public_key: Any, private: bool, key_id: bytes, label: str, token: bool, local: bool, gen_mech: int | None
) -> tuple[int, dict[int, A.Value]]:
    """What both objects of a key pair have, with what each may do by key type: an RSA key encrypts and
    wraps, every type but ML-KEM and DH signs, EC and DH keys derive."""
    key_type, specific = public_key_values(public_key)
    values = _storage(C.CKO_PRIVATE_KEY if private else C.CKO_PUBLIC_KEY, token, private, label)
    values.update(_key_common(key_type, key_id, local, gen_mech))
    if private:
        uses = (C.CKA_DECRYPT, C.CKA_SIGN, C.CKA_SIGN_RECOVER, C.CKA_UNWRAP)
    else:
        uses = (C.CKA_ENCRYPT, C.CKA_VERIFY, C.CKA_VERIFY_RECOVER, C.CKA_WRAP)
    rsa_key = key_type == C.CKK_RSA
    values.update(zip(uses, (rsa_key, key_type not in (C.CKK_ML_KEM, C.CKK_DH), False, rsa_key), strict=True))
    values[C.CKA_DERIVE] = key_type in (C.CKK_EC, C.CKK_DH)
    values.update(specific)
    return key_type, values


def public_key_attrs(
    public_key: Any, *, key_id: bytes, label: str, token: bool, local: bool, gen_mech: int | None
) -> dict[int, bytes]:
    key_type, values = _key_pair_half(public_key, False, key_id, label, token, local, gen_mech)
    values[C.CKA_TRUSTED] = False
    if key_type in PQ_KEY_TYPES:
        from vsc_provider.token import pqc

        values[C.CKA_VALUE] = pqc.public_value(public_key)
        values[C.CKA_ENCAPSULATE] = key_type == C.CKK_ML_KEM
    if key_type in DSA_DH_KEY_TYPES:
        from vsc_provider.token import dsa_dh

        values[C.CKA_VALUE] = dsa_dh.public_value(public_key)
    return A.make(values)


def private_key_attrs(
    public_key: Any, *, key_id: bytes, label: str, token: bool, local: bool, gen_mech: int | None
) -> dict[int, bytes]:
    key_type, values = _key_pair_half(public_key, True, key_id, label, token, local, gen_mech)
    if key_type in PQ_KEY_TYPES:
        values[C.CKA_DECAPSULATE] = key_type == C.CKK_ML_KEM
    values.update(
        {
            C.CKA_SENSITIVE: True,
            C.CKA_EXTRACTABLE: False,
            C.CKA_ALWAYS_SENSITIVE: local,
            C.CKA_NEVER_EXTRACTABLE: local,
            C.CKA_WRAP_WITH_TRUSTED: False,
            C.CKA_ALWAYS_AUTHENTICATE: False,
        }
    )
    return A.make(values)


def aes_check_value(key: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - KCV is defined on ECB
    return (encryptor.update(b"\x00" * 16) + encryptor.finalize())[:3]


def _secret_check_value(key_type: int, value: bytes) -> bytes:
    """AES: the first 3 bytes of an encrypted zero block; generic secrets: the first 3 bytes of SHA-1."""
    import hashlib

    if key_type == C.CKK_AES:
        return aes_check_value(value)
    if key_type == C.CKK_GENERIC_SECRET:
        return hashlib.sha1(value).digest()[:3]  # noqa: S324 - defined by the standard
    return b""


def secret_key_attrs(
    key_type: int, value: bytes, *, key_id: bytes, label: str, token: bool, local: bool, gen_mech: int | None
) -> dict[int, bytes]:
    values = _storage(C.CKO_SECRET_KEY, token, True, label)
    values.update(_key_common(key_type, key_id, local, gen_mech))
    values.update(
        {
            C.CKA_SENSITIVE: True,
            C.CKA_ENCRYPT: key_type == C.CKK_AES,
            C.CKA_DECRYPT: key_type == C.CKK_AES,
            C.CKA_SIGN: True,
            C.CKA_VERIFY: True,
            C.CKA_WRAP: key_type == C.CKK_AES,
            C.CKA_UNWRAP: key_type == C.CKK_AES,
            C.CKA_DERIVE: False,
            C.CKA_EXTRACTABLE: False,
            C.CKA_ALWAYS_SENSITIVE: local,
            C.CKA_NEVER_EXTRACTABLE: local,
            C.CKA_WRAP_WITH_TRUSTED: False,
            C.CKA_TRUSTED: False,
            C.CKA_VALUE_LEN: len(value),
            C.CKA_CHECK_VALUE: _secret_check_value(key_type, value),
        }
    )
    return A.make(values)


def certificate_attrs(der: bytes, *, key_id: bytes, label: str, token: bool, user_cert: bool) -> dict[int, bytes]:
    import hashlib

    from asn1crypto import core as asn1_core
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_VALUE is not a DER X.509 certificate") from exc
    serial = asn1_core.Integer(cert.serial_number).dump()
    public_key = cert.public_key()
    try:
        public_info = spki(public_key)
    except (ValueError, TypeError):
        public_info = b""
    values = _storage(C.CKO_CERTIFICATE, token, False, label)
    values.update(
        {
            C.CKA_CERTIFICATE_TYPE: C.CKC_X_509,
            C.CKA_TRUSTED: False,
            C.CKA_CERTIFICATE_CATEGORY: (
                C.CK_CERTIFICATE_CATEGORY_TOKEN_USER if user_cert else C.CK_CERTIFICATE_CATEGORY_UNSPECIFIED
            ),
            C.CKA_CHECK_VALUE: hashlib.sha1(der).digest()[:3],  # noqa: S324 - defined by the standard
            C.CKA_START_DATE: cert.not_valid_before_utc.strftime("%Y%m%d").encode(),
            C.CKA_END_DATE: cert.not_valid_after_utc.strftime("%Y%m%d").encode(),
            C.CKA_SUBJECT: cert.subject.public_bytes(),
            C.CKA_ISSUER: cert.issuer.public_bytes(),
            C.CKA_SERIAL_NUMBER: bytes(serial),
            C.CKA_ID: key_id,
            C.CKA_VALUE: der,
            C.CKA_URL: "",
            C.CKA_HASH_OF_SUBJECT_PUBLIC_KEY: b"",
            C.CKA_HASH_OF_ISSUER_PUBLIC_KEY: b"",
            C.CKA_JAVA_MIDP_SECURITY_DOMAIN: 0,
            C.CKA_NAME_HASH_ALGORITHM: C.CKM_SHA_1,
            C.CKA_PUBLIC_KEY_INFO: public_info,
        }
    )
    return A.make(values)


def data_attrs(value: bytes, *, label: str, application: str, token: bool, private: bool) -> dict[int, bytes]:
    values = _storage(C.CKO_DATA, token, private, label)
    values.update({C.CKA_APPLICATION: application, C.CKA_OBJECT_ID: b"", C.CKA_VALUE: value})
    return A.make(values)


PROFILE_LABEL = "PKCS#11 profile"


def profile_attrs(profile_id: int) -> dict[int, bytes]:
    values = _storage(C.CKO_PROFILE, True, False, PROFILE_LABEL)  # a label keeps listings (p11tool) readable
    values[C.CKA_MODIFIABLE] = False
    values[C.CKA_DESTROYABLE] = False
    values[C.CKA_COPYABLE] = False
    values[C.CKA_PROFILE_ID] = profile_id
    return A.make(values)


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
