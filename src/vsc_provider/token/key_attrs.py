"""The attribute sets of new keys: both halves of a key pair (from the public key) and secret keys, with what
each may do by key type, and the check values of secret keys.

`cryptography` and asn1crypto are imported where used: these modules load at every C_Initialize and their
start-up time and memory count (a host that only lists slots never needs them).
"""

from __future__ import annotations

from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.token.key_info import public_key_values
from vsc_provider.token.object_attrs import storage
from vsc_provider.token.objects import DSA_DH_KEY_TYPES, PQ_KEY_TYPES


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


def _key_pair_half(
    public_key: Any, private: bool, key_id: bytes, label: str, token: bool, local: bool, gen_mech: int | None
) -> tuple[int, dict[int, A.Value]]:
    """What both objects of a key pair have, with what each may do by key type: an RSA key encrypts and
    wraps, every type but ML-KEM and DH signs, EC and DH keys derive."""
    key_type, specific = public_key_values(public_key)
    values = storage(C.CKO_PRIVATE_KEY if private else C.CKO_PUBLIC_KEY, token, private, label)
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
    values = storage(C.CKO_SECRET_KEY, token, True, label)
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
