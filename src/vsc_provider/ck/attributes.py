"""Attribute codec: PKCS#11 attribute values as the C ABI carries them (raw bytes) and as Python sees them.

Objects keep their attributes as raw bytes in native layout, so C_GetAttributeValue copies without
converting and template matching compares bytes after one normalisation of the caller's template.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError

ULONG = struct.Struct("L")  # native CK_ULONG: 8 bytes on LP64
ULONG_SIZE = ULONG.size

BOOL_ATTRS = frozenset(
    {
        C.CKA_TOKEN,
        C.CKA_PRIVATE,
        C.CKA_TRUSTED,
        C.CKA_SENSITIVE,
        C.CKA_ENCRYPT,
        C.CKA_DECRYPT,
        C.CKA_WRAP,
        C.CKA_UNWRAP,
        C.CKA_SIGN,
        C.CKA_SIGN_RECOVER,
        C.CKA_VERIFY,
        C.CKA_VERIFY_RECOVER,
        C.CKA_DERIVE,
        C.CKA_EXTRACTABLE,
        C.CKA_LOCAL,
        C.CKA_NEVER_EXTRACTABLE,
        C.CKA_ALWAYS_SENSITIVE,
        C.CKA_MODIFIABLE,
        C.CKA_COPYABLE,
        C.CKA_DESTROYABLE,
        C.CKA_ALWAYS_AUTHENTICATE,
        C.CKA_WRAP_WITH_TRUSTED,
        C.CKA_ENCAPSULATE,
        C.CKA_DECAPSULATE,
        C.CKA_OTP_USER_FRIENDLY_MODE,
    }
)
ULONG_ATTRS = frozenset(
    {
        C.CKA_CLASS,
        C.CKA_CERTIFICATE_TYPE,
        C.CKA_CERTIFICATE_CATEGORY,
        C.CKA_JAVA_MIDP_SECURITY_DOMAIN,
        C.CKA_NAME_HASH_ALGORITHM,
        C.CKA_KEY_TYPE,
        C.CKA_MODULUS_BITS,
        C.CKA_VALUE_BITS,
        C.CKA_PRIME_BITS,
        C.CKA_SUB_PRIME_BITS,
        C.CKA_VALUE_LEN,
        C.CKA_KEY_GEN_MECHANISM,
        C.CKA_HW_FEATURE_TYPE,
        C.CKA_PROFILE_ID,
        C.CKA_PARAMETER_SET,
        C.CKA_OTP_FORMAT,
        C.CKA_OTP_LENGTH,
        C.CKA_OTP_TIME_INTERVAL,
        C.CKA_OTP_CHALLENGE_REQUIREMENT,
        C.CKA_OTP_TIME_REQUIREMENT,
        C.CKA_OTP_COUNTER_REQUIREMENT,
        C.CKA_OTP_PIN_REQUIREMENT,
        C.CKA_VSC_OTP_HASH,
        C.CKA_VSC_OTP_T0,
    }
)
STRING_ATTRS = frozenset(
    {
        C.CKA_LABEL,
        C.CKA_APPLICATION,
        C.CKA_URL,
        C.CKA_UNIQUE_ID,
        C.CKA_OTP_USER_IDENTIFIER,
        C.CKA_OTP_SERVICE_IDENTIFIER,
        C.CKA_OTP_SERVICE_LOGO_TYPE,
        C.CKA_OTP_TIME,
    }
)
DATE_ATTRS = frozenset({C.CKA_START_DATE, C.CKA_END_DATE})
ULONG_ARRAY_ATTRS = frozenset({C.CKA_ALLOWED_MECHANISMS})
TEMPLATE_ATTRS = frozenset({C.CKA_WRAP_TEMPLATE, C.CKA_UNWRAP_TEMPLATE, C.CKA_DERIVE_TEMPLATE})

TRUE = b"\x01"
FALSE = b"\x00"

Value = bool | int | str | bytes | list[int]
Template = dict[int, bytes]


def encode(attr: int, value: Value) -> bytes:
    """Python value -> raw attribute bytes."""
    if attr in BOOL_ATTRS:
        return TRUE if value else FALSE
    if attr in ULONG_ATTRS:
        assert isinstance(value, int)
        return ULONG.pack(value)
    if attr in ULONG_ARRAY_ATTRS:
        assert isinstance(value, list)
        return b"".join(ULONG.pack(v) for v in value)
    if isinstance(value, str):
        return value.encode()
    assert isinstance(value, bytes)
    return value


def decode(attr: int, raw: bytes) -> Value:
    """Raw attribute bytes -> Python value; a malformed value is CKR_ATTRIBUTE_VALUE_INVALID."""
    if attr in BOOL_ATTRS:
        if len(raw) != 1:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"attribute 0x{attr:x} wants a CK_BBOOL")
        return raw != FALSE
    if attr in ULONG_ATTRS:
        if len(raw) != ULONG_SIZE:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"attribute 0x{attr:x} wants a CK_ULONG")
        return int(ULONG.unpack(raw)[0])
    if attr in ULONG_ARRAY_ATTRS:
        if len(raw) % ULONG_SIZE:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"attribute 0x{attr:x} wants CK_ULONGs")
        return [int(v[0]) for v in ULONG.iter_unpack(raw)]
    if attr in STRING_ATTRS:
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "label is not UTF-8") from exc
    return raw


def normalize(attr: int, raw: bytes) -> bytes:
    """Bring a caller's raw value to the canonical form objects store (booleans become 0/1)."""
    if attr in TEMPLATE_ATTRS:
        raise CKRError(C.CKR_ATTRIBUTE_TYPE_INVALID, "nested templates are not supported")
    if attr in BOOL_ATTRS:
        decode(attr, raw)
        return FALSE if raw == FALSE else TRUE
    if attr in ULONG_ATTRS or attr in ULONG_ARRAY_ATTRS or attr in STRING_ATTRS:
        decode(attr, raw)
    return raw


def template(pairs: Iterable[tuple[int, bytes]]) -> Template:
    """A caller's template as canonical raw values; a repeated attribute must agree with itself."""
    out: Template = {}
    for attr, raw in pairs:
        value = normalize(attr, raw)
        if attr in out and out[attr] != value:
            raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, f"attribute 0x{attr:x} given twice")
        out[attr] = value
    return out


def make(values: Mapping[int, Value]) -> Template:
    """Build a raw template from Python values (the engine's way of writing attributes)."""
    return {attr: encode(attr, value) for attr, value in values.items()}


def get_bool(attrs: Mapping[int, bytes], attr: int, default: bool = False) -> bool:
    raw = attrs.get(attr)
    return default if raw is None else raw != FALSE


def get_ulong(attrs: Mapping[int, bytes], attr: int, default: int | None = None) -> int | None:
    raw = attrs.get(attr)
    return default if raw is None else int(ULONG.unpack(raw)[0])
