"""Multi-part encryption and decryption as the standard says: parts of any length, length queries and short
buffers mid-stream keep the operation, any other failure (in an update or the final step) ends it."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from p11_support import CK_GCM_PARAMS, USER_PIN, CardEnv, RawModule, call_out, mechanism, secret_key

from vsc_provider.ck import constants as C

CK_ULONG = ctypes.c_ulong


class CK_AES_CTR_PARAMS(ctypes.Structure):
    _fields_ = [("ulCounterBits", CK_ULONG), ("cb", ctypes.c_ubyte * 16)]


@pytest.fixture(scope="module")
def raw(card_env: CardEnv, module_path: str) -> Iterator[tuple[RawModule, int]]:
    m = RawModule(module_path)
    h = m.open(int(card_env.slot().slot_id))
    assert m.login(h, USER_PIN) == C.CKR_OK
    yield m, h
    m.C_CloseSession(h)


@pytest.fixture(scope="module")
def aes(raw: tuple[RawModule, int]) -> tuple[int, bytes]:
    value = os.urandom(16)
    return secret_key(raw[0], raw[1], value, C.CKK_AES), value


def _update(m: RawModule, fn: object, h: int, data: bytes) -> tuple[int, bytes]:
    return call_out(fn, h, data, len(data))


def test_parts_of_any_length_and_whole_blocks_in_total(raw: tuple[RawModule, int], aes: tuple[int, bytes]) -> None:
    m, h = raw
    key, value = aes
    data = os.urandom(48)
    expected = Cipher(algorithms.AES(value), modes.ECB()).encryptor().update(data)
    assert m.C_EncryptInit(h, ctypes.byref(mechanism(C.CKM_AES_ECB)), key) == C.CKR_OK
    out = b""
    for piece in (data[:10], data[10:16], data[16:47], data[47:]):
        rv, part = _update(m, m.C_EncryptUpdate, h, piece)
        assert rv == C.CKR_OK
        out += part
    assert call_out(m.C_EncryptFinal, h) == (C.CKR_OK, b"")
    assert out == expected
    # Decrypting in odd pieces too.
    assert m.C_DecryptInit(h, ctypes.byref(mechanism(C.CKM_AES_ECB)), key) == C.CKR_OK
    plain = b"".join(_update(m, m.C_DecryptUpdate, h, p)[1] for p in (expected[:5], expected[5:]))
    assert plain + call_out(m.C_DecryptFinal, h)[1] == data


def test_final_errors_end_the_operation(raw: tuple[RawModule, int], aes: tuple[int, bytes]) -> None:
    m, h = raw
    key, value = aes
    iv = ctypes.create_string_buffer(os.urandom(16), 16)
    for mech_type, fn_init, fn_update, fn_final, expected in (
        (C.CKM_AES_ECB, m.C_EncryptInit, m.C_EncryptUpdate, m.C_EncryptFinal, C.CKR_DATA_LEN_RANGE),
        (C.CKM_AES_CBC, m.C_EncryptInit, m.C_EncryptUpdate, m.C_EncryptFinal, C.CKR_DATA_LEN_RANGE),
        (C.CKM_AES_CBC, m.C_DecryptInit, m.C_DecryptUpdate, m.C_DecryptFinal, C.CKR_ENCRYPTED_DATA_LEN_RANGE),
        (C.CKM_AES_CBC_PAD, m.C_DecryptInit, m.C_DecryptUpdate, m.C_DecryptFinal, C.CKR_ENCRYPTED_DATA_LEN_RANGE),
    ):
        mech = mechanism(mech_type) if mech_type == C.CKM_AES_ECB else mechanism(mech_type, iv)
        assert fn_init(h, ctypes.byref(mech), key) == C.CKR_OK
        assert _update(m, fn_update, h, b"x" * 17)[0] == C.CKR_OK
        assert call_out(fn_final, h) == (expected, b""), hex(mech_type)
        assert call_out(fn_final, h)[0] == C.CKR_OPERATION_NOT_INITIALIZED  # ended by the failure
    # Bad padding at C_DecryptFinal: CKR_ENCRYPTED_DATA_INVALID, and the operation is over.
    pad_mech = mechanism(C.CKM_AES_CBC_PAD, iv)
    assert m.C_DecryptInit(h, ctypes.byref(pad_mech), key) == C.CKR_OK
    # A ciphertext whose plaintext ends in 0x00, never a valid pad byte (random bytes were valid 1 time in 256).
    bad_pad = Cipher(algorithms.AES(value), modes.CBC(iv.raw)).encryptor().update(b"\x11" * 31 + b"\x00")
    assert _update(m, m.C_DecryptUpdate, h, bad_pad)[0] == C.CKR_OK
    assert call_out(m.C_DecryptFinal, h)[0] == C.CKR_ENCRYPTED_DATA_INVALID
    assert _update(m, m.C_DecryptUpdate, h, b"\x00" * 16)[0] == C.CKR_OPERATION_NOT_INITIALIZED
    assert call_out(m.C_EncryptFinal, h)[0] == C.CKR_OPERATION_NOT_INITIALIZED


def test_failed_update_ends_the_operation(raw: tuple[RawModule, int], aes: tuple[int, bytes]) -> None:
    m, h = raw
    key, _ = aes
    params = CK_AES_CTR_PARAMS(8, (ctypes.c_ubyte * 16)(*(b"\x00" * 15 + b"\xff")))  # one block left
    assert m.C_EncryptInit(h, ctypes.byref(mechanism(C.CKM_AES_CTR, params)), key) == C.CKR_OK
    assert _update(m, m.C_EncryptUpdate, h, b"x" * 10)[0] == C.CKR_OK
    assert _update(m, m.C_EncryptUpdate, h, b"x" * 10)[0] == C.CKR_DATA_LEN_RANGE
    assert _update(m, m.C_EncryptUpdate, h, b"x")[0] == C.CKR_OPERATION_NOT_INITIALIZED
    assert m.C_EncryptInit(h, ctypes.byref(mechanism(C.CKM_AES_CTR, params)), key) == C.CKR_OK  # not ACTIVE
    assert call_out(m.C_EncryptFinal, h) == (C.CKR_OK, b"")


def test_length_queries_and_short_buffers_mid_stream(raw: tuple[RawModule, int], aes: tuple[int, bytes]) -> None:
    m, h = raw
    key, value = aes
    iv = os.urandom(16)
    mech = mechanism(C.CKM_AES_CBC_PAD, ctypes.create_string_buffer(iv, 16))
    data = os.urandom(40)
    padder = sym_padding.PKCS7(128).padder()
    expected = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor().update(padder.update(data) + padder.finalize())
    assert m.C_EncryptInit(h, ctypes.byref(mech), key) == C.CKR_OK
    n = CK_ULONG()
    assert m.C_EncryptUpdate(h, data[:35], 35, None, ctypes.byref(n)) == C.CKR_OK
    assert n.value == 32  # two whole blocks come out, three bytes wait
    short = (ctypes.c_ubyte * 16)()
    n.value = 16
    assert m.C_EncryptUpdate(h, data[:35], 35, short, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    assert n.value == 32
    full = (ctypes.c_ubyte * 32)()
    assert m.C_EncryptUpdate(h, data[:35], 35, full, ctypes.byref(n)) == C.CKR_OK  # the same part, once
    out = bytes(full[: n.value])
    rv, part = _update(m, m.C_EncryptUpdate, h, data[35:])
    assert rv == C.CKR_OK
    out += part
    n.value = 0
    assert m.C_EncryptFinal(h, None, ctypes.byref(n)) == C.CKR_OK and n.value == 16
    tiny = (ctypes.c_ubyte * 4)()
    n.value = 4
    assert m.C_EncryptFinal(h, tiny, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL and n.value == 16
    rv, last = call_out(m.C_EncryptFinal, h)
    assert rv == C.CKR_OK and out + last == expected
    assert call_out(m.C_EncryptFinal, h)[0] == C.CKR_OPERATION_NOT_INITIALIZED

    # The same on the way back: C_DecryptFinal's short buffer keeps the held-back last block.
    assert m.C_DecryptInit(h, ctypes.byref(mech), key) == C.CKR_OK
    rv, plain = _update(m, m.C_DecryptUpdate, h, expected)
    assert rv == C.CKR_OK and len(plain) == 32
    n.value = 2
    assert m.C_DecryptFinal(h, tiny, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL and n.value == 8
    rv, tail = call_out(m.C_DecryptFinal, h)
    assert rv == C.CKR_OK and plain + tail == data


def test_gcm_decryption_releases_nothing_before_the_tag(raw: tuple[RawModule, int], aes: tuple[int, bytes]) -> None:
    """PyKCS11's pattern: each update is a length query and then a call with a buffer of that length. The
    update's output is empty, yet the query answers a length that is not 0, so the host passes a buffer and
    the second update is not mistaken for a repeat of the first."""
    m, h = raw
    key, value = aes
    iv, data = os.urandom(12), os.urandom(40)
    encryptor = Cipher(algorithms.AES(value), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(b"aad")
    sealed = encryptor.update(data) + encryptor.finalize() + encryptor.tag
    iv_buf, aad = ctypes.create_string_buffer(iv, 12), ctypes.create_string_buffer(b"aad", 3)
    params = CK_GCM_PARAMS(ctypes.addressof(iv_buf), 12, 96, ctypes.addressof(aad), 3, 128)
    assert m.C_DecryptInit(h, ctypes.byref(mechanism(C.CKM_AES_GCM, params)), key) == C.CKR_OK
    for part in (sealed[:30], sealed[30:]):
        n = CK_ULONG()
        assert m.C_DecryptUpdate(h, part, len(part), None, ctypes.byref(n)) == C.CKR_OK and n.value > 0
        buf = (ctypes.c_ubyte * n.value)()
        assert m.C_DecryptUpdate(h, part, len(part), buf, ctypes.byref(n)) == C.CKR_OK
        assert n.value == 0  # no plaintext before the tag is checked
    rv, plain = call_out(m.C_DecryptFinal, h)
    assert rv == C.CKR_OK and plain == data
