"""Turning a caller's template into a complete object: defaults, what callers may set, and consistency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import curves, ec_params, key_attrs
from vsc_provider.token import objects as O

# Attributes a caller may give when creating or generating an object, beyond those that define its value.
SETTABLE = frozenset(
    {
        C.CKA_CLASS,
        C.CKA_TOKEN,
        C.CKA_PRIVATE,
        C.CKA_LABEL,
        C.CKA_ID,
        C.CKA_SUBJECT,
        C.CKA_START_DATE,
        C.CKA_END_DATE,
        C.CKA_SIGN,
        C.CKA_VERIFY,
        C.CKA_ENCRYPT,
        C.CKA_DECRYPT,
        C.CKA_WRAP,
        C.CKA_UNWRAP,
        C.CKA_DERIVE,
        C.CKA_SIGN_RECOVER,
        C.CKA_VERIFY_RECOVER,
        C.CKA_SENSITIVE,
        C.CKA_EXTRACTABLE,
        C.CKA_ALWAYS_AUTHENTICATE,
        C.CKA_MODIFIABLE,
        C.CKA_COPYABLE,
        C.CKA_DESTROYABLE,
        C.CKA_APPLICATION,
        C.CKA_OBJECT_ID,
        C.CKA_CERTIFICATE_CATEGORY,
        C.CKA_TRUSTED,
        C.CKA_KEY_TYPE,
        C.CKA_CERTIFICATE_TYPE,
        C.CKA_ISSUER,
        C.CKA_SERIAL_NUMBER,
        C.CKA_URL,
        C.CKA_WRAP_WITH_TRUSTED,
        C.CKA_ALLOWED_MECHANISMS,
        C.CKA_ENCAPSULATE,
        C.CKA_DECAPSULATE,
        # Certificates keep these as given (key objects drop them with the value-defining attributes).
        C.CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
        C.CKA_HASH_OF_ISSUER_PUBLIC_KEY,
        C.CKA_JAVA_MIDP_SECURITY_DOMAIN,
        C.CKA_NAME_HASH_ALGORITHM,
    }
)
# Attributes that define key material: consumed to build the key, never stored as given.
VALUE_DEFINING = frozenset(
    {
        C.CKA_VALUE,
        C.CKA_MODULUS,
        C.CKA_PUBLIC_EXPONENT,
        *O.RSA_PRIVATE_PARTS,
        C.CKA_EC_PARAMS,
        C.CKA_EC_POINT,
        C.CKA_MODULUS_BITS,
        C.CKA_VALUE_LEN,
        C.CKA_PUBLIC_KEY_INFO,
        C.CKA_KEY_GEN_MECHANISM,
        C.CKA_LOCAL,
        C.CKA_CHECK_VALUE,
        C.CKA_UNIQUE_ID,
        C.CKA_NEVER_EXTRACTABLE,
        C.CKA_ALWAYS_SENSITIVE,
        C.CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
        C.CKA_HASH_OF_ISSUER_PUBLIC_KEY,
        C.CKA_JAVA_MIDP_SECURITY_DOMAIN,
        C.CKA_NAME_HASH_ALGORITHM,
        C.CKA_PARAMETER_SET,
        C.CKA_SEED,
        C.CKA_PRIME,  # DSA and DH domain parameters
        C.CKA_SUBPRIME,
        C.CKA_BASE,
        C.CKA_PRIME_BITS,
        C.CKA_SUB_PRIME_BITS,
        C.CKA_VALUE_BITS,
    }
)


def overrides(
    template: dict[int, bytes], built: dict[int, bytes], consumed: frozenset[int] = VALUE_DEFINING
) -> dict[int, bytes]:
    """Apply the caller's settable attributes on top of a built object; refuse unknown or conflicting ones."""
    out = dict(built)
    for attr, value in template.items():
        if attr in consumed:
            if (
                attr in built
                and attr not in (C.CKA_VALUE,)
                and built[attr] != value
                and attr
                in (
                    C.CKA_MODULUS_BITS,
                    C.CKA_EC_PARAMS,
                    C.CKA_VALUE_LEN,
                    C.CKA_PARAMETER_SET,
                )
            ):
                raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, f"attribute 0x{attr:x} disagrees with the key")
            continue
        if attr not in SETTABLE:
            raise CKRError(C.CKR_ATTRIBUTE_TYPE_INVALID, f"attribute 0x{attr:x} cannot be set here")
        if attr in (C.CKA_CLASS, C.CKA_KEY_TYPE, C.CKA_CERTIFICATE_TYPE) and attr in built and built[attr] != value:
            raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, f"attribute 0x{attr:x} disagrees with the object")
        out[attr] = value
    # CKA_PRIVATE of keys is the card policy's (CardPolicy.settle): always true on strict cards.
    klass = A.get_ulong(out, C.CKA_CLASS)
    if klass == C.CKO_PRIVATE_KEY:
        # The security model: private keys stay sensitive and never leave the card.
        out[C.CKA_SENSITIVE] = A.TRUE
        out[C.CKA_EXTRACTABLE] = A.FALSE
    return out


def check_value(template: dict[int, bytes], computed: bytes) -> bytes:
    """CKA_CHECK_VALUE to store: a caller's value must equal the computed one; an empty one asks for none."""
    given = template.get(C.CKA_CHECK_VALUE)
    if given is None:
        return computed
    if given and given != computed:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_CHECK_VALUE does not match the object's value")
    return given


def ulong(template: dict[int, bytes], attr: int) -> int | None:
    raw = template.get(attr)
    return None if raw is None else int(A.decode(attr, raw))  # type: ignore[arg-type]


def text(template: dict[int, bytes], attr: int, default: str = "") -> str:
    raw = template.get(attr)
    return default if raw is None else str(A.decode(attr, raw))


def flag(template: dict[int, bytes], attr: int, default: bool) -> bool:
    return A.get_bool(template, attr, default)


def require(template: dict[int, bytes], attr: int) -> bytes:
    value = template.get(attr)
    if value is None:
        raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, f"attribute 0x{attr:x} is required")
    return value


def _int(template: dict[int, bytes], attr: int) -> int:
    return int.from_bytes(require(template, attr), "big")


KeyFrom = Callable[[int, dict[int, bytes]], Any]  # (key type, template) -> a `cryptography` key


def public_key_from(template: dict[int, bytes]) -> Any:
    return _key_from(template, 0, "public key")


def private_key_from(template: dict[int, bytes]) -> Any:
    return _key_from(template, 1, "private key")


def _key_from(template: dict[int, bytes], half: int, what: str) -> Any:
    key_type = ulong(template, C.CKA_KEY_TYPE)
    build = None if key_type is None else _KEY_FROM.get(key_type, (None, None))[half]
    if key_type is None or build is None:
        raise CKRError(
            C.CKR_ATTRIBUTE_VALUE_INVALID if key_type is not None else C.CKR_TEMPLATE_INCOMPLETE,
            "unsupported key type",
        )
    try:
        return build(key_type, template)
    except ValueError as exc:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"malformed {what}: {exc}") from exc


# `cryptography` loads at the first use, not at C_Initialize: each builder imports what it needs.


def _rsa_public(key_type: int, template: dict[int, bytes]) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.RSAPublicNumbers(_int(template, C.CKA_PUBLIC_EXPONENT), _int(template, C.CKA_MODULUS)).public_key()


def _rsa_private(key_type: int, template: dict[int, bytes]) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    n = _int(template, C.CKA_MODULUS)
    e = _int(template, C.CKA_PUBLIC_EXPONENT)
    d = _int(template, C.CKA_PRIVATE_EXPONENT)
    if C.CKA_PRIME_1 in template and C.CKA_PRIME_2 in template:
        p, q = _int(template, C.CKA_PRIME_1), _int(template, C.CKA_PRIME_2)
    else:
        p, q = rsa.rsa_recover_prime_factors(n, e, d)
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, n),
    )
    return numbers.private_key()


def _curve_and_value(template: dict[int, bytes], value_attr: int) -> tuple[str, bytes]:
    """An EC or Edwards key's curve (CKA_EC_PARAMS, read first) and its point or private value."""
    return ec_params.curve_from_params(require(template, C.CKA_EC_PARAMS)), require(template, value_attr)


def _ec_public(key_type: int, template: dict[int, bytes]) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    oid, encoded = _curve_and_value(template, C.CKA_EC_POINT)
    point = ec_params.unwrap_octet_string(encoded)
    if oid in curves.EDWARDS_OIDS:
        edwards = ed25519.Ed25519PublicKey if oid == curves.ED25519_OID else ed448.Ed448PublicKey
        return edwards.from_public_bytes(point)
    return ec.EllipticCurvePublicKey.from_encoded_point(curves.ec_curve(oid), point)


def _ec_private(key_type: int, template: dict[int, bytes]) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    oid, value = _curve_and_value(template, C.CKA_VALUE)
    if oid in curves.EDWARDS_OIDS:
        edwards = ed25519.Ed25519PrivateKey if oid == curves.ED25519_OID else ed448.Ed448PrivateKey
        return edwards.from_private_bytes(value)
    return ec.derive_private_key(int.from_bytes(value, "big"), curves.ec_curve(oid))


def _pq_public(key_type: int, template: dict[int, bytes]) -> Any:
    from vsc_provider.token import pqc

    return pqc.public_from_value(key_type, ulong(template, C.CKA_PARAMETER_SET), require(template, C.CKA_VALUE))


def _pq_private(key_type: int, template: dict[int, bytes]) -> Any:
    from vsc_provider.token import pqc  # imported from the seed, the form `cryptography` reads

    return pqc.private_from_seed(key_type, ulong(template, C.CKA_PARAMETER_SET), require(template, C.CKA_SEED))


def _dsa_dh_public(key_type: int, template: dict[int, bytes]) -> Any:
    from vsc_provider.token import dsa_dh

    return dsa_dh.public_from(key_type, template)


def _dsa_dh_private(key_type: int, template: dict[int, bytes]) -> Any:
    from vsc_provider.token import dsa_dh

    return dsa_dh.private_from(key_type, template)


# key type -> (public key from a template, private key from a template)
_KEY_FROM: dict[int, tuple[KeyFrom, KeyFrom]] = {
    C.CKK_RSA: (_rsa_public, _rsa_private),
    C.CKK_EC: (_ec_public, _ec_private),
    C.CKK_EC_EDWARDS: (_ec_public, _ec_private),
    **dict.fromkeys(O.PQ_KEY_TYPES, (_pq_public, _pq_private)),
    **dict.fromkeys(O.DSA_DH_KEY_TYPES, (_dsa_dh_public, _dsa_dh_private)),
}


def pkcs8(private_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


SECRET_KEY_TYPES = frozenset(
    {
        C.CKK_AES,
        C.CKK_GENERIC_SECRET,
        C.CKK_SHA_1_HMAC,
        C.CKK_SHA224_HMAC,
        C.CKK_SHA256_HMAC,
        C.CKK_SHA384_HMAC,
        C.CKK_SHA512_HMAC,
        C.CKK_SHA3_224_HMAC,
        C.CKK_SHA3_256_HMAC,
        C.CKK_SHA3_384_HMAC,
        C.CKK_SHA3_512_HMAC,
        C.CKK_HKDF,
    }
)


def secret_key_type(template: dict[int, bytes], default: int | None = None) -> int:
    key_type = ulong(template, C.CKA_KEY_TYPE)
    if key_type is None:
        if default is None:
            raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKA_KEY_TYPE is required")
        key_type = default
    if key_type not in SECRET_KEY_TYPES:
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, f"secret key type 0x{key_type:x} is not supported")
    return key_type


def check_secret_length(key_type: int, value: bytes) -> None:
    if key_type == C.CKK_AES and len(value) not in (16, 24, 32):
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "AES keys have 16, 24 or 32 bytes")
    if not value or len(value) > 512:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "secret keys have 1 to 512 bytes")


def secret_object(
    template: dict[int, bytes], key_type: int, value: bytes, *, local: bool, gen_mech: int | None
) -> dict[int, bytes]:
    check_secret_length(key_type, value)
    built = key_attrs.secret_key_attrs(
        key_type,
        value,
        key_id=template.get(C.CKA_ID, b""),
        label=text(template, C.CKA_LABEL),
        token=flag(template, C.CKA_TOKEN, False),
        local=local,
        gen_mech=gen_mech,
    )
    attrs = overrides(template, built)
    attrs[C.CKA_CHECK_VALUE] = check_value(template, built[C.CKA_CHECK_VALUE])
    attrs[C.CKA_ALWAYS_SENSITIVE] = A.encode(C.CKA_ALWAYS_SENSITIVE, local and A.get_bool(attrs, C.CKA_SENSITIVE))
    attrs[C.CKA_NEVER_EXTRACTABLE] = A.encode(
        C.CKA_NEVER_EXTRACTABLE, local and not A.get_bool(attrs, C.CKA_EXTRACTABLE)
    )
    return attrs
