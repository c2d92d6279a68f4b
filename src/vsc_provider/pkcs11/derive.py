"""C_DeriveKey for secret base keys: AES encrypt-data, concatenation, XOR, bit extraction and HKDF."""

from __future__ import annotations

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import HkdfParams, Mechanism
from vsc_provider.pkcs11 import templates as T
from vsc_provider.pkcs11.state import LIB, Session, add_new_key, find_object
from vsc_provider.token.objects import TokenObject

# Mechanisms that move the base key's bits into the new key: it inherits their protection (PKCS#11 says so
# for the concatenations; without it, XOR with known data would read out a sensitive key).
_ENCRYPT_DATA = frozenset({C.CKM_AES_ECB_ENCRYPT_DATA, C.CKM_AES_CBC_ENCRYPT_DATA})
_BITWISE = frozenset(
    {
        C.CKM_CONCATENATE_BASE_AND_KEY,
        C.CKM_CONCATENATE_BASE_AND_DATA,
        C.CKM_CONCATENATE_DATA_AND_BASE,
        C.CKM_XOR_BASE_AND_DATA,
        C.CKM_EXTRACT_KEY_FROM_KEY,
    }
)


def _secret_value(s: Session, obj: TokenObject) -> bytes:
    if obj.klass != C.CKO_SECRET_KEY:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "this derivation needs secret keys")
    return LIB.require().material(s.card, obj)


def derive_secret(s: Session, mech: Mechanism, base_obj: TokenObject, pairs: list[tuple[int, bytes]]) -> int:
    from vsc_provider.token import derive

    template = A.template(pairs)
    base = _secret_value(s, base_obj)
    sources = [base_obj]
    other: bytes | None = None
    if mech.type == C.CKM_CONCATENATE_BASE_AND_KEY:
        if not isinstance(mech.param, int):
            raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "needs the second key's handle")
        second = find_object(s, mech.param, C.CKR_KEY_HANDLE_INVALID)
        other = _secret_value(s, second)
        sources.append(second)
    elif isinstance(mech.param, HkdfParams) and mech.param.salt_type == C.CKF_HKDF_SALT_KEY:
        other = _secret_value(s, find_object(s, mech.param.salt_key, C.CKR_KEY_HANDLE_INVALID))
    key_type = T.secret_key_type(template, C.CKK_GENERIC_SECRET)
    length = T.ulong(template, C.CKA_VALUE_LEN)
    value = derive.derive(mech, base, other, length)
    if length is not None:
        if not 0 < length <= len(value):
            # The data of ECB/CBC_ENCRYPT_DATA is the key's source: too little of it is a parameter error.
            code = C.CKR_MECHANISM_PARAM_INVALID if mech.type in _ENCRYPT_DATA else C.CKR_TEMPLATE_INCONSISTENT
            raise CKRError(code, "CKA_VALUE_LEN is longer than the derived value")
        value = value[:length]
    attrs = T.secret_object(template, key_type, value, local=False, gen_mech=None)
    if mech.type in _BITWISE:
        if any(o.bool(C.CKA_SENSITIVE, True) for o in sources):
            attrs[C.CKA_SENSITIVE] = A.TRUE
        if not all(o.bool(C.CKA_EXTRACTABLE) for o in sources):
            attrs[C.CKA_EXTRACTABLE] = A.FALSE
    # PKCS#11 4.10: "always sensitive" and "never extractable" only if every source key was, and still is.
    always = all(o.bool(C.CKA_ALWAYS_SENSITIVE) for o in sources) and A.get_bool(attrs, C.CKA_SENSITIVE)
    never = all(o.bool(C.CKA_NEVER_EXTRACTABLE) for o in sources) and not A.get_bool(attrs, C.CKA_EXTRACTABLE)
    attrs[C.CKA_ALWAYS_SENSITIVE] = A.encode(C.CKA_ALWAYS_SENSITIVE, always)
    attrs[C.CKA_NEVER_EXTRACTABLE] = A.encode(C.CKA_NEVER_EXTRACTABLE, never)
    return add_new_key(s, attrs, value)
