"""C ABI conventions through ctypes on the function list: interface discovery, NULL pointers, short
buffers and the length-query convention, invalid handles.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from p11_support import (
    CK_INTERFACE,
    CK_MECHANISM,
    CK_ULONG,
    CK_VERSION,
    USER_PIN,
    CardEnv,
    RawModule,
    public_key_of,
)
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from vsc_provider.ck import constants as C


@pytest.fixture(scope="module")
def raw(card_env: CardEnv, module_path: str) -> RawModule:
    return RawModule(module_path)


@pytest.fixture(scope="module")
def logged_in(card_env: CardEnv) -> Iterator[pkcs11.Session]:
    """A python-pkcs11 session that keeps the user logged in (login is shared by every session)."""
    with card_env.token().open(rw=True, user_pin=USER_PIN) as s:
        yield s


@pytest.fixture
def h(raw: RawModule, card_env: CardEnv, logged_in: pkcs11.Session) -> Iterator[int]:
    handle = raw.open(int(card_env.slot().slot_id))
    yield handle
    raw.C_CloseSession(handle)


@pytest.fixture(scope="module")
def ec_key(logged_in: pkcs11.Session) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    return logged_in.generate_keypair(
        KeyType.EC,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
    )


@pytest.fixture(scope="module")
def rsa_key(logged_in: pkcs11.Session) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    return logged_in.generate_keypair(KeyType.RSA, 2048)


def _mech(mtype: int) -> CK_MECHANISM:
    return CK_MECHANISM(mtype, None, 0)


# --- interface discovery -----------------------------------------------------------------------


def test_get_function_list(raw: RawModule) -> None:
    assert raw.dll.C_GetFunctionList(None) == C.CKR_ARGUMENTS_BAD
    assert (raw.functions.version.major, raw.functions.version.minor) == (2, 40)


def test_get_interface_list(raw: RawModule) -> None:
    count = CK_ULONG()
    assert raw.dll.C_GetInterfaceList(None, None) == C.CKR_ARGUMENTS_BAD
    assert raw.dll.C_GetInterfaceList(None, ctypes.byref(count)) == C.CKR_OK
    assert count.value >= 2
    small = CK_ULONG(1)
    listing = (CK_INTERFACE * count.value)()
    assert raw.dll.C_GetInterfaceList(listing, ctypes.byref(small)) == C.CKR_BUFFER_TOO_SMALL
    assert small.value == count.value
    assert raw.dll.C_GetInterfaceList(listing, ctypes.byref(count)) == C.CKR_OK
    versions = set()
    for iface in listing:
        assert iface.pInterfaceName == b"PKCS 11"
        assert iface.pFunctionList
        v = CK_VERSION.from_address(iface.pFunctionList)
        versions.add((v.major, v.minor))
    assert {(3, 0), (2, 40)} <= versions


def _get_interface(raw: RawModule, name: bytes | None, version: tuple[int, int] | None, flags: int) -> tuple[int, int]:
    out = ctypes.c_void_p()
    v = CK_VERSION(*version) if version else None
    rv = raw.dll.C_GetInterface(name, ctypes.byref(v) if v else None, ctypes.byref(out), flags)
    return int(rv), out.value or 0


def test_get_interface(raw: RawModule) -> None:
    for name, version in (
        (None, None),
        (b"PKCS 11", None),
        (b"PKCS 11", (3, 0)),
        (b"PKCS 11", (3, 2)),
        (None, (2, 40)),
    ):
        rv, ptr = _get_interface(raw, name, version, 0)
        assert rv == C.CKR_OK and ptr, (name, version)
        iface = CK_INTERFACE.from_address(ptr)
        assert iface.pInterfaceName == b"PKCS 11"
        v = CK_VERSION.from_address(iface.pFunctionList)
        if version:
            assert (v.major, v.minor) == version
    # Unknown names, versions and flags are errors, never CKR_OK with a NULL interface.
    for name, version, flags in (
        (b"Vendor thing", None, 0),
        (b"PKCS 11", (3, 1), 0),
        (b"PKCS 11", (9, 9), 0),
        (None, None, C.CKF_INTERFACE_FORK_SAFE),
    ):
        rv, ptr = _get_interface(raw, name, version, flags)
        assert rv != C.CKR_OK and ptr == 0, (name, version, flags, hex(rv))
    assert raw.dll.C_GetInterface(b"PKCS 11", None, None, 0) == C.CKR_ARGUMENTS_BAD


def test_3_0_function_list_works(raw: RawModule, card_env: CardEnv) -> None:
    rv, ptr = _get_interface(raw, b"PKCS 11", (3, 0), 0)
    assert rv == C.CKR_OK
    iface = CK_INTERFACE.from_address(ptr)
    # C_GetSlotList is the fifth function after the version in both tables
    slot_list = ctypes.c_void_p.from_address(iface.pFunctionList + 8 * 5).value
    proto = ctypes.CFUNCTYPE(CK_ULONG, CK_ULONG, ctypes.c_void_p, ctypes.c_void_p)(slot_list)
    n = CK_ULONG()
    assert proto(1, None, ctypes.byref(n)) == C.CKR_OK
    assert n.value >= 1


# --- NULL pointers and short buffers -----------------------------------------------------------


def test_null_pointers(raw: RawModule, h: int, ec_key: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    slot = raw.session_info(h).slotID
    bad = C.CKR_ARGUMENTS_BAD
    assert raw.C_GetInfo(None) == bad
    assert raw.C_GetSlotList(1, None, None) == bad
    assert raw.C_GetSlotInfo(slot, None) == bad
    assert raw.C_GetTokenInfo(slot, None) == bad
    assert raw.C_GetMechanismList(slot, None, None) == bad
    assert raw.C_GetMechanismInfo(slot, C.CKM_ECDSA, None) == bad
    assert raw.C_OpenSession(slot, C.CKF_SERIAL_SESSION, None, None, None) == bad
    assert raw.C_GetSessionInfo(h, None) == bad
    assert raw.C_FindObjectsInit(h, None, 1) == bad
    assert raw.C_GetObjectSize(h, ec_key[0].handle, None) == bad
    assert raw.C_SignInit(h, None, ec_key[1].handle) == bad
    mech = _mech(C.CKM_ECDSA)
    assert raw.C_SignInit(h, ctypes.byref(mech), ec_key[1].handle) == C.CKR_OK
    assert raw.C_Sign(h, b"\x01" * 32, 32, None, None) == bad
    assert raw.C_Sign(h, None, 32, None, ctypes.byref(CK_ULONG())) == bad
    assert raw.C_GenerateRandom(h, None, 16) == bad
    assert raw.C_Finalize(ctypes.c_void_p(1)) == bad


def test_slot_list_short_buffer(raw: RawModule, h: int) -> None:
    n = CK_ULONG(0)
    buf = (CK_ULONG * 8)()
    assert raw.C_GetSlotList(1, buf, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    assert n.value >= 1
    assert raw.C_GetSlotList(1, buf, ctypes.byref(n)) == C.CKR_OK
    assert raw.session_info(h).slotID in list(buf[: n.value])
    m = CK_ULONG(1)
    assert raw.C_GetMechanismList(buf[0], buf, ctypes.byref(m)) == C.CKR_BUFFER_TOO_SMALL
    assert m.value > 20


def _ecdsa_verify(pub: pkcs11.PublicKey, digest: bytes, sig: bytes) -> None:
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    public_key_of(pub).verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_sign_length_query_then_sign(
    raw: RawModule, h: int, ec_key: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]
) -> None:
    pub, priv = ec_key
    digest = b"\x42" * 32
    mech = _mech(C.CKM_ECDSA)
    n = CK_ULONG()
    assert raw.C_SignInit(h, ctypes.byref(mech), priv.handle) == C.CKR_OK
    assert raw.C_Sign(h, digest, 32, None, ctypes.byref(n)) == C.CKR_OK
    assert n.value == 64
    short = ctypes.create_string_buffer(10)
    n.value = 10
    assert raw.C_Sign(h, digest, 32, short, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    assert n.value == 64
    # the signature made for the short buffer is the one delivered, not a second one
    sig1 = ctypes.create_string_buffer(64)
    n.value = 32
    assert raw.C_Sign(h, digest, 32, sig1, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    n.value = 64
    assert raw.C_Sign(h, None, 0, None, ctypes.byref(n)) == C.CKR_OK and n.value == 64
    n.value = 64
    assert raw.C_Sign(h, digest, 32, sig1, ctypes.byref(n)) == C.CKR_OK
    _ecdsa_verify(pub, digest, sig1.raw)
    # the operation is over
    assert raw.C_Sign(h, digest, 32, sig1, ctypes.byref(n)) == C.CKR_OPERATION_NOT_INITIALIZED


def test_short_buffer_keeps_the_signature(
    raw: RawModule, h: int, ec_key: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]
) -> None:
    """After CKR_BUFFER_TOO_SMALL the same signature comes back: ECDSA would differ if signed again."""
    pub, priv = ec_key
    digest = b"\x24" * 32
    mech = _mech(C.CKM_ECDSA)
    assert raw.C_SignInit(h, ctypes.byref(mech), priv.handle) == C.CKR_OK
    n = CK_ULONG(63)
    buf = ctypes.create_string_buffer(64)
    assert raw.C_Sign(h, digest, 32, buf, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    n.value = 64
    assert raw.C_Sign(h, digest, 32, buf, ctypes.byref(n)) == C.CKR_OK
    first = buf.raw
    _ecdsa_verify(pub, digest, first)
    # a fresh operation signs anew (ECDSA is randomised), so equal results above mean one signature
    assert raw.C_SignInit(h, ctypes.byref(mech), priv.handle) == C.CKR_OK
    assert raw.C_Sign(h, digest, 32, buf, ctypes.byref(n)) == C.CKR_OK
    assert buf.raw != first


def test_multipart_sign_final_length_query(
    raw: RawModule, h: int, rsa_key: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]
) -> None:
    pub, priv = rsa_key
    mech = _mech(C.CKM_SHA256_RSA_PKCS)
    assert raw.C_SignInit(h, ctypes.byref(mech), priv.handle) == C.CKR_OK
    for part in (b"one ", b"two ", b"three"):
        assert raw.C_SignUpdate(h, part, len(part)) == C.CKR_OK
    n = CK_ULONG()
    assert raw.C_SignFinal(h, None, ctypes.byref(n)) == C.CKR_OK
    assert n.value == 256
    sig = ctypes.create_string_buffer(256)
    n.value = 100
    assert raw.C_SignFinal(h, sig, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    assert n.value == 256
    assert raw.C_SignFinal(h, sig, ctypes.byref(n)) == C.CKR_OK
    public_key_of(pub).verify(sig.raw, b"one two three", padding.PKCS1v15(), hashes.SHA256())
    assert raw.C_SignUpdate(h, b"x", 1) == C.CKR_OPERATION_NOT_INITIALIZED


def test_digest_and_encrypt_length_queries(raw: RawModule, h: int, logged_in: pkcs11.Session) -> None:
    import hashlib

    mech = _mech(C.CKM_SHA384)
    assert raw.C_DigestInit(h, ctypes.byref(mech)) == C.CKR_OK
    n = CK_ULONG()
    assert raw.C_Digest(h, b"abc", 3, None, ctypes.byref(n)) == C.CKR_OK and n.value == 48
    out = ctypes.create_string_buffer(48)
    n.value = 47
    assert raw.C_Digest(h, b"abc", 3, out, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL and n.value == 48
    assert raw.C_Digest(h, b"abc", 3, out, ctypes.byref(n)) == C.CKR_OK
    assert out.raw == hashlib.sha384(b"abc").digest()

    key = logged_in.generate_key(KeyType.AES, 128)
    nonce = b"\x07" * 12
    from p11_support import CK_ULONG as UL

    class GCM(ctypes.Structure):
        _fields_ = [
            ("pIv", ctypes.c_void_p),
            ("ulIvLen", UL),
            ("ulIvBits", UL),
            ("pAAD", ctypes.c_void_p),
            ("ulAADLen", UL),
            ("ulTagBits", UL),
        ]

    iv = ctypes.create_string_buffer(nonce, 12)
    params = GCM(ctypes.cast(iv, ctypes.c_void_p), 12, 96, None, 0, 128)
    gcm = CK_MECHANISM(C.CKM_AES_GCM, ctypes.cast(ctypes.byref(params), ctypes.c_void_p), ctypes.sizeof(params))
    assert raw.C_EncryptInit(h, ctypes.byref(gcm), key.handle) == C.CKR_OK
    assert raw.C_EncryptUpdate(h, b"a" * 20, 20, None, ctypes.byref(n)) == C.CKR_OK
    first = ctypes.create_string_buffer(max(n.value, 1))
    assert raw.C_EncryptUpdate(h, b"a" * 20, 20, first, ctypes.byref(n)) == C.CKR_OK
    head = first.raw[: n.value]
    assert raw.C_EncryptFinal(h, None, ctypes.byref(n)) == C.CKR_OK
    tail = ctypes.create_string_buffer(n.value)
    small = CK_ULONG(1)
    assert raw.C_EncryptFinal(h, tail, ctypes.byref(small)) == C.CKR_BUFFER_TOO_SMALL
    assert raw.C_EncryptFinal(h, tail, ctypes.byref(n)) == C.CKR_OK
    ciphertext = head + tail.raw[: n.value]
    assert key.decrypt(ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=pkcs11.GCMParams(nonce, None, 128)) == (
        b"a" * 20
    )


# --- invalid handles and states ----------------------------------------------------------------


def test_invalid_handles(raw: RawModule, h: int, ec_key: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    n = CK_ULONG()
    mech = _mech(C.CKM_ECDSA)
    assert raw.C_CloseSession(0xDEAD) == C.CKR_SESSION_HANDLE_INVALID
    assert raw.C_GetSessionInfo(0xDEAD, ctypes.byref(n)) == C.CKR_SESSION_HANDLE_INVALID
    assert raw.C_SignInit(0xDEAD, ctypes.byref(mech), ec_key[1].handle) == C.CKR_SESSION_HANDLE_INVALID
    assert raw.C_SignInit(h, ctypes.byref(mech), 0xDEAD) == C.CKR_KEY_HANDLE_INVALID
    assert raw.C_DestroyObject(h, 0xDEAD) == C.CKR_OBJECT_HANDLE_INVALID
    assert raw.C_GetObjectSize(h, 0xDEAD, ctypes.byref(n)) == C.CKR_OBJECT_HANDLE_INVALID
    assert raw.C_GetSlotInfo(0xDEAD, ctypes.byref(ctypes.create_string_buffer(200))) == C.CKR_SLOT_ID_INVALID
    assert raw.C_OpenSession(0xDEAD, C.CKF_SERIAL_SESSION, None, None, ctypes.byref(n)) == C.CKR_SLOT_ID_INVALID
    assert raw.C_OpenSession(raw.session_info(h).slotID, 0, None, None, ctypes.byref(n)) == (
        C.CKR_SESSION_PARALLEL_NOT_SUPPORTED
    )
    assert raw.C_Sign(h, b"x", 1, None, ctypes.byref(n)) == C.CKR_OPERATION_NOT_INITIALIZED
    bogus = _mech(0x7FFF1234)
    assert raw.C_SignInit(h, ctypes.byref(bogus), ec_key[1].handle) == C.CKR_MECHANISM_INVALID
    rsa_mech = _mech(C.CKM_SHA256_RSA_PKCS)
    assert raw.C_SignInit(h, ctypes.byref(rsa_mech), ec_key[1].handle) == C.CKR_KEY_TYPE_INCONSISTENT
    assert raw.C_SignInit(h, ctypes.byref(mech), ec_key[0].handle) == C.CKR_KEY_TYPE_INCONSISTENT
    assert raw.C_SignInit(h, ctypes.byref(mech), ec_key[1].handle) == C.CKR_OK
    assert raw.C_SignInit(h, ctypes.byref(mech), ec_key[1].handle) == C.CKR_OPERATION_ACTIVE


def test_not_supported_functions(raw: RawModule, h: int) -> None:
    n = CK_ULONG()
    assert raw.C_GetOperationState(h, None, ctypes.byref(n)) == C.CKR_FUNCTION_NOT_SUPPORTED
    assert raw.C_GetFunctionStatus(h) == C.CKR_FUNCTION_NOT_PARALLEL
    assert raw.C_SeedRandom(h, b"seed", 4) == C.CKR_OK  # accepted and dropped: the OS generator is the source
    assert raw.C_SeedRandom(h, None, 4) == C.CKR_ARGUMENTS_BAD
    slot = CK_ULONG()
    assert raw.C_WaitForSlotEvent(C.CKF_DONT_BLOCK, ctypes.byref(slot), None) == C.CKR_NO_EVENT
