"""AES-CTR, the AES MACs, SHA-3 digests and HMACs, and the secret-key derivations, driven through the
module (python-pkcs11, or ctypes where it has no parameter type) and checked against `cryptography`."""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os
from collections.abc import Iterator
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from p11_support import (
    CK_MECHANISM,
    CardEnv,
    RawModule,
    call_out,
    make_template,
    mechanism,
    secret_key,
    ulong,
)
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

from vsc_provider.ck import constants as C

CK_ULONG = ctypes.c_ulong
TRUE, FALSE = b"\x01", b"\x00"


class CK_AES_CTR_PARAMS(ctypes.Structure):
    _fields_ = [("ulCounterBits", CK_ULONG), ("cb", ctypes.c_ubyte * 16)]


class CK_KEY_DERIVATION_STRING_DATA(ctypes.Structure):
    _fields_ = [("pData", ctypes.c_void_p), ("ulLen", CK_ULONG)]


class CK_AES_CBC_ENCRYPT_DATA_PARAMS(ctypes.Structure):
    _fields_ = [("iv", ctypes.c_ubyte * 16), ("pData", ctypes.c_void_p), ("length", CK_ULONG)]


class CK_HKDF_PARAMS(ctypes.Structure):
    _fields_ = [
        ("bExtract", ctypes.c_ubyte),
        ("bExpand", ctypes.c_ubyte),
        ("prfHashMechanism", CK_ULONG),
        ("ulSaltType", CK_ULONG),
        ("pSalt", ctypes.c_void_p),
        ("ulSaltLen", CK_ULONG),
        ("hSaltKey", CK_ULONG),
        ("pInfo", ctypes.c_void_p),
        ("ulInfoLen", CK_ULONG),
    ]


@pytest.fixture(scope="module")
def raw(card_env: CardEnv, session: pkcs11.Session, module_path: str) -> Iterator[tuple[RawModule, int]]:
    m = RawModule(module_path)
    h = m.open(int(card_env.slot().slot_id))  # logged in already through `session`
    yield m, h
    m.C_CloseSession(h)


def _key(raw: tuple[RawModule, int], value: bytes, key_type: int = C.CKK_AES, **flags: bool) -> int:
    return secret_key(raw[0], raw[1], value, key_type, **flags)


_mech = mechanism
_out = call_out


def _value(raw: tuple[RawModule, int], handle: int) -> bytes:
    m, h = raw
    buf = ctypes.create_string_buffer(512)
    attr = (p11 := make_template([(C.CKA_VALUE, b"\x00" * 512)]))[0]
    attr[0].pValue = ctypes.cast(buf, ctypes.c_void_p)
    assert m.C_GetAttributeValue(h, handle, attr, 1) == C.CKR_OK
    del p11
    return buf.raw[: attr[0].ulValueLen]


def _attr(raw: tuple[RawModule, int], handle: int, attr_type: int) -> bytes:
    m, h = raw
    buf = ctypes.create_string_buffer(64)
    attrs, keep = make_template([(attr_type, b"\x00" * 64)])
    attrs[0].pValue = ctypes.cast(buf, ctypes.c_void_p)
    assert m.C_GetAttributeValue(h, handle, attrs, 1) == C.CKR_OK
    del keep
    return buf.raw[: attrs[0].ulValueLen]


# --- AES-CTR -----------------------------------------------------------------------------------


def _ctr(raw: tuple[RawModule, int], key: int, bits: int, block: bytes, data: bytes, encrypt: bool = True) -> Any:
    m, h = raw
    params = CK_AES_CTR_PARAMS(bits, (ctypes.c_ubyte * 16)(*block))
    init = m.C_EncryptInit if encrypt else m.C_DecryptInit
    rv = init(h, ctypes.byref(_mech(C.CKM_AES_CTR, params)), key)
    if rv != C.CKR_OK:
        return int(rv)
    return _out(m.C_Encrypt if encrypt else m.C_Decrypt, h, data, len(data))


def test_aes_ctr(raw: tuple[RawModule, int]) -> None:
    value, block, data = os.urandom(16), os.urandom(12) + b"\x00\x00\x00\x01", os.urandom(100)
    key = _key(raw, value)
    expected = Cipher(algorithms.AES(value), modes.CTR(block)).encryptor().update(data)
    assert _ctr(raw, key, 32, block, data) == (C.CKR_OK, expected)
    assert _ctr(raw, key, 128, block, expected, encrypt=False) == (C.CKR_OK, data)
    # Multi-part, in pieces that are not whole blocks.
    m, h = raw
    params = CK_AES_CTR_PARAMS(64, (ctypes.c_ubyte * 16)(*block))
    assert m.C_EncryptInit(h, ctypes.byref(_mech(C.CKM_AES_CTR, params)), key) == C.CKR_OK
    parts = b""
    for piece in (data[:7], data[7:40], data[40:]):
        rv, out = _out(m.C_EncryptUpdate, h, piece, len(piece))
        assert rv == C.CKR_OK
        parts += out
    rv, tail = _out(m.C_EncryptFinal, h)
    assert rv == C.CKR_OK and parts + tail == expected
    # Counter bits that cannot be honoured, and a counter that would wrap within its bits.
    assert _ctr(raw, key, 0, block, data) == C.CKR_MECHANISM_PARAM_INVALID
    assert _ctr(raw, key, 129, block, data) == C.CKR_MECHANISM_PARAM_INVALID
    near_end = b"\x00" * 15 + b"\xfe"  # two blocks left in an 8-bit counter
    assert _ctr(raw, key, 8, near_end, b"x" * 32)[0] == C.CKR_OK
    assert _ctr(raw, key, 8, near_end, b"x" * 33)[0] == C.CKR_DATA_LEN_RANGE


# --- AES MACs ----------------------------------------------------------------------------------


def _cbc_mac(value: bytes, data: bytes) -> bytes:
    padded = data + b"\x00" * (-len(data) % 16) if data else b"\x00" * 16
    return Cipher(algorithms.AES(value), modes.CBC(b"\x00" * 16)).encryptor().update(padded)[-16:]


def test_aes_cmac_and_cbc_mac(session: pkcs11.Session, raw: tuple[RawModule, int]) -> None:
    value = os.urandom(32)
    key = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: value,
            Attribute.SIGN: True,
            Attribute.VERIFY: True,
        }
    )
    data = os.urandom(45)
    c = cmac.CMAC(algorithms.AES(value))
    c.update(data)
    full = c.finalize()
    assert key.sign(data, mechanism=Mechanism.AES_CMAC) == full
    assert key.sign(iter([data[:5], data[5:]]), mechanism=Mechanism.AES_CMAC) == full
    assert key.verify(data, full, mechanism=Mechanism.AES_CMAC)
    assert not key.verify(data, bytes(16), mechanism=Mechanism.AES_CMAC)
    assert key.sign(data, mechanism=Mechanism.AES_MAC) == _cbc_mac(value, data)[:8]
    assert key.sign(iter([data[:20], data[20:]]), mechanism=Mechanism.AES_MAC) == _cbc_mac(value, data)[:8]
    # The _GENERAL forms take the length (CK_MAC_GENERAL_PARAMS, a CK_ULONG).
    m, h = raw
    for mech, expected in ((C.CKM_AES_CMAC_GENERAL, full), (C.CKM_AES_MAC_GENERAL, _cbc_mac(value, data))):
        length = CK_ULONG(12)
        assert m.C_SignInit(h, ctypes.byref(_mech(mech, length)), key.handle) == C.CKR_OK
        assert _out(m.C_Sign, h, data, len(data)) == (C.CKR_OK, expected[:12])
        assert m.C_SignInit(h, ctypes.byref(_mech(mech, CK_ULONG(17))), key.handle) == C.CKR_MECHANISM_PARAM_INVALID


# --- SHA-3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [224, 256, 384, 512])
def test_sha3_digest_and_hmac(session: pkcs11.Session, bits: int) -> None:
    data = os.urandom(77)
    digest_mech = getattr(Mechanism, f"SHA3_{bits}")
    assert session.digest(data, mechanism=digest_mech) == hashlib.new(f"sha3_{bits}", data).digest()
    value = os.urandom(32)
    key = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.VALUE: value,
            Attribute.SIGN: True,
            Attribute.VERIFY: True,
        }
    )
    mac = hmac.new(value, data, f"sha3_{bits}").digest()
    hmac_mech = getattr(Mechanism, f"SHA3_{bits}_HMAC")
    assert key.sign(data, mechanism=hmac_mech) == mac
    assert key.verify(data, mac, mechanism=hmac_mech)


def test_new_mechanisms_are_listed(card_env: CardEnv) -> None:
    slot = card_env.slot()
    listed = set(slot.get_mechanisms())
    for mech in (Mechanism.AES_CTR, Mechanism.AES_CMAC, Mechanism.SHA3_256, Mechanism.SHA3_256_HMAC):
        assert mech in listed
    assert MechanismFlag.SIGN in slot.get_mechanism_info(Mechanism.AES_CMAC).flags
    assert MechanismFlag.DERIVE in slot.get_mechanism_info(Mechanism.CONCATENATE_BASE_AND_KEY).flags
    assert C.CKM_HKDF_DERIVE in {int(x) for x in listed}


# --- derivation --------------------------------------------------------------------------------


def _derive(raw: tuple[RawModule, int], mech: CK_MECHANISM, base: int, pairs: list[tuple[int, bytes]]) -> Any:
    m, h = raw
    attrs, keep = make_template(
        [(C.CKA_CLASS, ulong(C.CKO_SECRET_KEY)), (C.CKA_SENSITIVE, FALSE), (C.CKA_EXTRACTABLE, TRUE), *pairs]
    )
    out = CK_ULONG()
    rv = m.C_DeriveKey(h, ctypes.byref(mech), base, attrs, 3 + len(pairs), ctypes.byref(out))
    del keep
    return out.value if rv == C.CKR_OK else -int(rv)


def _string_data(data: bytes) -> tuple[CK_KEY_DERIVATION_STRING_DATA, Any]:
    buf = ctypes.create_string_buffer(data, len(data))
    return CK_KEY_DERIVATION_STRING_DATA(ctypes.cast(buf, ctypes.c_void_p), len(data)), buf


def test_aes_encrypt_data_derivation(raw: tuple[RawModule, int]) -> None:
    value, data, iv = os.urandom(16), os.urandom(32), os.urandom(16)
    base = _key(raw, value, derive=True)
    params, keep = _string_data(data)
    ecb = Cipher(algorithms.AES(value), modes.ECB()).encryptor().update(data)
    aes_type = [(C.CKA_KEY_TYPE, ulong(C.CKK_AES))]
    new = _derive(raw, _mech(C.CKM_AES_ECB_ENCRYPT_DATA, params), base, aes_type)
    assert _value(raw, new) == ecb
    buf = ctypes.create_string_buffer(data, len(data))
    cbc_params = CK_AES_CBC_ENCRYPT_DATA_PARAMS((ctypes.c_ubyte * 16)(*iv), ctypes.cast(buf, ctypes.c_void_p), 32)
    cbc = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor().update(data)
    new = _derive(raw, _mech(C.CKM_AES_CBC_ENCRYPT_DATA, cbc_params), base, [(C.CKA_VALUE_LEN, ulong(16))])
    assert _value(raw, new) == cbc[:16]
    bad, keep2 = _string_data(b"x" * 15)
    assert _derive(raw, _mech(C.CKM_AES_ECB_ENCRYPT_DATA, bad), base, []) == -C.CKR_MECHANISM_PARAM_INVALID
    # 16 bytes of data cannot make a 32-byte AES key: the parameter is short (python-pkcs11's suite expects so)
    short, keep3 = _string_data(b"y" * 16)
    too_long = [(C.CKA_KEY_TYPE, ulong(C.CKK_AES)), (C.CKA_VALUE_LEN, ulong(32))]
    assert _derive(raw, _mech(C.CKM_AES_ECB_ENCRYPT_DATA, short), base, too_long) == -C.CKR_MECHANISM_PARAM_INVALID
    no_derive = _key(raw, value)
    assert _derive(raw, _mech(C.CKM_AES_ECB_ENCRYPT_DATA, params), no_derive, []) == -C.CKR_KEY_FUNCTION_NOT_PERMITTED
    del keep, keep2, keep3


def test_concatenate_xor_and_extract(raw: tuple[RawModule, int]) -> None:
    a, b, data = os.urandom(16), os.urandom(8), os.urandom(12)
    base = _key(raw, a, C.CKK_GENERIC_SECRET, derive=True)
    other = _key(raw, b, C.CKK_GENERIC_SECRET)
    assert _value(raw, _derive(raw, _mech(C.CKM_CONCATENATE_BASE_AND_KEY, CK_ULONG(other)), base, [])) == a + b
    params, keep = _string_data(data)
    assert _value(raw, _derive(raw, _mech(C.CKM_CONCATENATE_BASE_AND_DATA, params), base, [])) == a + data
    assert _value(raw, _derive(raw, _mech(C.CKM_CONCATENATE_DATA_AND_BASE, params), base, [])) == data + a
    xored = bytes(x ^ y for x, y in zip(a, data, strict=False))
    assert _value(raw, _derive(raw, _mech(C.CKM_XOR_BASE_AND_DATA, params), base, [])) == xored
    # Bits 5.. of the base, wrapping around to its start.
    as_int = int.from_bytes(a, "big")
    rotated = (((as_int << 5) | (as_int >> 123)) & ((1 << 128) - 1)).to_bytes(16, "big")
    extract = _mech(C.CKM_EXTRACT_KEY_FROM_KEY, CK_ULONG(5))
    assert _value(raw, _derive(raw, extract, base, [(C.CKA_VALUE_LEN, ulong(16))])) == rotated
    assert _derive(raw, extract, base, []) == -C.CKR_TEMPLATE_INCOMPLETE
    # A sensitive base passes its protection on: XOR with known data must not read it out.
    m, h = raw
    sensitive_base = _key(raw, a, C.CKK_GENERIC_SECRET, derive=True)
    attrs, keep2 = make_template([(C.CKA_SENSITIVE, TRUE)])
    assert m.C_SetAttributeValue(h, sensitive_base, attrs, 1) == C.CKR_OK
    derived = _derive(raw, _mech(C.CKM_XOR_BASE_AND_DATA, params), sensitive_base, [])
    assert _attr(raw, derived, C.CKA_SENSITIVE) == TRUE
    assert _attr(raw, derived, C.CKA_ALWAYS_SENSITIVE) == FALSE
    del keep, keep2


def _hkdf_params(extract: bool, expand: bool, salt: bytes | None, info: bytes, salt_key: int = 0) -> Any:
    salt_buf = ctypes.create_string_buffer(salt or b"", max(1, len(salt or b"")))
    info_buf = ctypes.create_string_buffer(info, max(1, len(info)))
    salt_type = C.CKF_HKDF_SALT_KEY if salt_key else C.CKF_HKDF_SALT_NULL if salt is None else C.CKF_HKDF_SALT_DATA
    params = CK_HKDF_PARAMS(
        extract,
        expand,
        C.CKM_SHA256,
        salt_type,
        ctypes.cast(salt_buf, ctypes.c_void_p),
        len(salt or b""),
        salt_key,
        ctypes.cast(info_buf, ctypes.c_void_p),
        len(info),
    )
    return params, (salt_buf, info_buf)


def test_hkdf_derive(raw: tuple[RawModule, int]) -> None:
    ikm, salt, info = os.urandom(32), os.urandom(16), b"vsc hkdf test"
    base = _key(raw, ikm, C.CKK_GENERIC_SECRET, derive=True)
    length = [(C.CKA_VALUE_LEN, ulong(42))]
    params, keep = _hkdf_params(True, True, salt, info)
    expected = HKDF(hashes.SHA256(), 42, salt, info).derive(ikm)
    assert _value(raw, _derive(raw, _mech(C.CKM_HKDF_DERIVE, params), base, length)) == expected
    params, keep = _hkdf_params(True, True, None, info)
    expected = HKDF(hashes.SHA256(), 42, None, info).derive(ikm)
    assert _value(raw, _derive(raw, _mech(C.CKM_HKDF_DERIVE, params), base, length)) == expected
    salt_key = _key(raw, salt, C.CKK_GENERIC_SECRET)
    params, keep = _hkdf_params(True, True, None, info, salt_key=salt_key)
    expected = HKDF(hashes.SHA256(), 42, salt, info).derive(ikm)
    assert _value(raw, _derive(raw, _mech(C.CKM_HKDF_DERIVE, params), base, length)) == expected
    params, keep = _hkdf_params(False, True, None, info)
    expected = HKDFExpand(hashes.SHA256(), 42, info).derive(ikm)
    assert _value(raw, _derive(raw, _mech(C.CKM_HKDF_DERIVE, params), base, length)) == expected
    params, keep = _hkdf_params(True, False, salt, b"")
    prk = hmac.new(salt, ikm, "sha256").digest()
    assert _value(raw, _derive(raw, _mech(C.CKM_HKDF_DERIVE, params), base, [])) == prk
    params, keep = _hkdf_params(False, False, salt, b"")
    assert _derive(raw, _mech(C.CKM_HKDF_DERIVE, params), base, length) == -C.CKR_MECHANISM_PARAM_INVALID
    del keep
