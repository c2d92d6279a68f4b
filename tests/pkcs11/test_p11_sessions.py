"""Sessions and login rules of the built library: R/O and R/W, SO and user, PIN changes, lockout,
CKA_ALWAYS_AUTHENTICATE, and what is visible before login.

Login state belongs to the card in this process, shared by all of its sessions, so each test closes
every session of its card at the end (which also logs out).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from p11_support import (
    CK_SESSION_INFO,
    CK_ULONG,
    CKA_PROFILE_ID,
    CKP_PUBLIC_CERTIFICATES_TOKEN,
    SO_PIN,
    USER_PIN,
    CardEnv,
    RawModule,
    make_card,
    make_template,
    public_key_of,
    reinitialize,
    ulong,
    vsc,
)
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from vsc_provider.ck import constants as C

CKO_NSS_TRUST = 0xCE534353
CKO_NSS_BUILTIN_ROOT_LIST = 0xCE534354


@pytest.fixture(scope="module")
def raw(card_env: CardEnv, module_path: str) -> RawModule:
    return RawModule(module_path)


@pytest.fixture(scope="module")
def slot(card_env: CardEnv) -> int:
    return int(card_env.slot().slot_id)


@pytest.fixture(autouse=True)
def _close_sessions(raw: RawModule, slot: int) -> Iterator[None]:
    yield
    raw.C_CloseAllSessions(slot)


@pytest.fixture(scope="module")
def key_pair(card_env: CardEnv, raw: RawModule, slot: int) -> tuple[bytes, bytes]:
    """A token RSA key pair made through python-pkcs11; returns (CKA_ID, modulus)."""
    with card_env.token().open(rw=True, user_pin=USER_PIN) as s:
        pub, _ = s.generate_keypair(KeyType.RSA, 2048, label="session-test", store=True)
        return pub[Attribute.ID], pub[Attribute.MODULUS]


def _data_object(token: bool) -> list[tuple[int, bytes]]:
    return [
        (C.CKA_CLASS, ulong(C.CKO_DATA)),
        (C.CKA_TOKEN, b"\x01" if token else b"\x00"),
        (C.CKA_PRIVATE, b"\x00"),
        (C.CKA_LABEL, b"note"),
        (C.CKA_VALUE, b"hello"),
    ]


def _create(raw: RawModule, h: int, pairs: list[tuple[int, bytes]]) -> tuple[int, int]:
    attrs, keep = make_template(pairs)
    handle = ctypes.c_ulong()
    rv = raw.C_CreateObject(h, attrs, len(pairs), ctypes.byref(handle))
    del keep
    return int(rv), handle.value


def test_read_only_session_cannot_write_token_objects(raw: RawModule, slot: int) -> None:
    h = raw.open(slot, rw=False)
    assert raw.session_info(h).state == C.CKS_RO_PUBLIC_SESSION
    assert raw.login(h, USER_PIN) == C.CKR_OK
    assert raw.session_info(h).state == C.CKS_RO_USER_FUNCTIONS
    assert raw.session_info(h).flags & C.CKF_RW_SESSION == 0
    rv, _ = _create(raw, h, _data_object(token=True))
    assert rv == C.CKR_SESSION_READ_ONLY
    rv, obj = _create(raw, h, _data_object(token=False))
    assert rv == C.CKR_OK
    assert raw.C_DestroyObject(h, obj) == C.CKR_OK


def test_python_pkcs11_read_only_session_cannot_store_keys(card_env: CardEnv) -> None:
    with card_env.token().open(rw=False, user_pin=USER_PIN) as s:
        with pytest.raises(pkcs11.SessionReadOnly):
            s.generate_keypair(KeyType.EC, public_template={Attribute.EC_PARAMS: _p256()}, store=True)
        _pub, priv = s.generate_keypair(
            KeyType.EC, mechanism=Mechanism.EC_KEY_PAIR_GEN, public_template={Attribute.EC_PARAMS: _p256()}
        )
        assert not priv[Attribute.TOKEN]


def _p256() -> bytes:
    from pkcs11.util.ec import encode_named_curve_parameters

    return encode_named_curve_parameters("secp256r1")


def test_user_login_rules(raw: RawModule, slot: int) -> None:
    h1 = raw.open(slot)
    h2 = raw.open(slot)
    assert raw.login(h1, USER_PIN) == C.CKR_OK
    assert raw.session_info(h2).state == C.CKS_RW_USER_FUNCTIONS  # login is shared by the sessions
    assert raw.login(h1, USER_PIN) == C.CKR_USER_ALREADY_LOGGED_IN
    assert raw.login(h2, USER_PIN) == C.CKR_USER_ALREADY_LOGGED_IN
    assert raw.login(h2, SO_PIN, C.CKU_SO) == C.CKR_USER_ANOTHER_ALREADY_LOGGED_IN
    assert raw.C_Logout(h2) == C.CKR_OK
    assert raw.session_info(h1).state == C.CKS_RW_PUBLIC_SESSION
    assert raw.C_Logout(h1) == C.CKR_USER_NOT_LOGGED_IN
    assert raw.login(h1, USER_PIN, 77) == C.CKR_USER_TYPE_INVALID


def test_so_login_rules(raw: RawModule, slot: int) -> None:
    ro = raw.open(slot, rw=False)
    rw = raw.open(slot)
    assert raw.login(rw, SO_PIN, C.CKU_SO) == C.CKR_SESSION_READ_ONLY_EXISTS
    assert raw.C_CloseSession(ro) == C.CKR_OK
    assert raw.login(rw, SO_PIN, C.CKU_SO) == C.CKR_OK
    assert raw.session_info(rw).state == C.CKS_RW_SO_FUNCTIONS
    h = ctypes.c_ulong()
    rv = raw.C_OpenSession(slot, C.CKF_SERIAL_SESSION, None, None, ctypes.byref(h))
    assert rv == C.CKR_SESSION_READ_WRITE_SO_EXISTS
    assert raw.login(rw, USER_PIN) == C.CKR_USER_ANOTHER_ALREADY_LOGGED_IN
    assert raw.login(rw, SO_PIN, C.CKU_SO) == C.CKR_USER_ALREADY_LOGGED_IN


def test_closing_the_last_session_logs_out(raw: RawModule, slot: int) -> None:
    h1 = raw.open(slot)
    h2 = raw.open(slot)
    assert raw.login(h1, USER_PIN) == C.CKR_OK
    assert raw.C_CloseSession(h1) == C.CKR_OK
    assert raw.session_info(h2).state == C.CKS_RW_USER_FUNCTIONS  # another session still open
    assert raw.C_CloseSession(h2) == C.CKR_OK
    h3 = raw.open(slot)
    assert raw.session_info(h3).state == C.CKS_RW_PUBLIC_SESSION
    assert raw.C_CloseSession(h3) == C.CKR_OK
    assert raw.C_CloseSession(h3) == C.CKR_SESSION_HANDLE_INVALID


def test_private_objects_invisible_before_login(raw: RawModule, slot: int, key_pair: tuple[bytes, bytes]) -> None:
    key_id, _ = key_pair
    h = raw.open(slot, rw=False)
    by_id = [(C.CKA_ID, key_id)]
    assert raw.find(h, [(C.CKA_CLASS, ulong(C.CKO_PRIVATE_KEY))]) == []
    public = raw.find(h, [*by_id, (C.CKA_CLASS, ulong(C.CKO_PUBLIC_KEY))])
    assert len(public) == 1
    assert len(raw.find(h, by_id)) == 1
    assert raw.login(h, USER_PIN) == C.CKR_OK
    assert len(raw.find(h, by_id)) == 2
    private = raw.find(h, [*by_id, (C.CKA_CLASS, ulong(C.CKO_PRIVATE_KEY))])
    assert len(private) == 1
    assert raw.C_Logout(h) == C.CKR_OK
    # a private handle known from before is not usable after logout
    attrs, keep = make_template([(C.CKA_LABEL, b"x" * 32)])
    assert raw.C_GetAttributeValue(h, private[0], attrs, 1) == C.CKR_OBJECT_HANDLE_INVALID
    del keep


def test_profile_object(raw: RawModule, slot: int, card_env: CardEnv) -> None:
    h = raw.open(slot, rw=False)
    found = raw.find(h, [(C.CKA_CLASS, ulong(C.CKO_PROFILE))])
    assert len(found) == 1
    with card_env.token().open() as s:
        (profile,) = list(s.get_objects({Attribute.CLASS: C.CKO_PROFILE}))
        assert int.from_bytes(profile[CKA_PROFILE_ID], "little") == CKP_PUBLIC_CERTIFICATES_TOKEN
        assert profile[Attribute.LABEL] == "PKCS#11 profile"  # p11tool and pkcs11-tool listings show a name


@pytest.mark.parametrize("klass", [CKO_NSS_TRUST, CKO_NSS_BUILTIN_ROOT_LIST, C.CKO_HW_FEATURE, 0x0E, 0x7FFF0001])
def test_search_for_classes_the_module_does_not_hold(raw: RawModule, slot: int, klass: int) -> None:
    h = raw.open(slot)
    assert raw.login(h, USER_PIN) == C.CKR_OK
    assert raw.find(h, [(C.CKA_CLASS, ulong(klass))]) == []


def test_wrong_pin_then_right_pin(raw: RawModule, slot: int, card_env: CardEnv) -> None:
    h = raw.open(slot)
    assert raw.login(h, "135792") == C.CKR_PIN_INCORRECT
    assert card_env.token().flags & C.CKF_USER_PIN_COUNT_LOW
    assert raw.login(h, USER_PIN) == C.CKR_OK
    assert not card_env.token().flags & C.CKF_USER_PIN_COUNT_LOW


def _other_card(card_env: CardEnv, label: str) -> tuple[str, int]:
    serial = make_card(card_env.home, label)
    token = card_env.token(serial)
    return serial, int(token.slot.slot_id)


def test_blocked_card_gives_pin_locked_until_the_so_resets_it(raw: RawModule, card_env: CardEnv) -> None:
    serial, slot = _other_card(card_env, "Blocked card")
    h = raw.open(slot)
    results = []
    while len(results) < 40:
        rv = raw.login(h, "135792")
        if rv == C.CKR_FUNCTION_FAILED:  # inside a waiting period: refused without being counted
            time.sleep(0.05)
            continue
        results.append(rv)
        if rv == C.CKR_PIN_LOCKED:
            break
    assert results == [C.CKR_PIN_INCORRECT] * 9 + [C.CKR_PIN_LOCKED]
    assert card_env.token(serial).flags & C.CKF_USER_PIN_LOCKED
    assert raw.login(h, USER_PIN) == C.CKR_PIN_LOCKED
    assert raw.login(h, SO_PIN, C.CKU_SO) == C.CKR_OK
    new = b"604938"
    assert raw.C_InitPIN(h, new, len(new)) == C.CKR_OK
    assert raw.C_Logout(h) == C.CKR_OK
    assert raw.login(h, new.decode()) == C.CKR_OK
    assert not card_env.token(serial).flags & C.CKF_USER_PIN_LOCKED


def test_set_pin_and_init_pin(raw: RawModule, card_env: CardEnv) -> None:
    _serial, slot = _other_card(card_env, "PIN card")
    h = raw.open(slot)
    old, new = USER_PIN.encode(), b"730461"
    for bad, rv in ((b"123456", C.CKR_PIN_INVALID), (b"12a45b", C.CKR_PIN_INVALID), (b"7304", C.CKR_PIN_LEN_RANGE)):
        assert raw.C_SetPIN(h, old, len(old), bad, len(bad)) == rv
    assert raw.C_SetPIN(h, b"000000", 6, new, len(new)) == C.CKR_PIN_INCORRECT
    assert raw.C_SetPIN(h, old, len(old), new, len(new)) == C.CKR_OK
    assert raw.login(h, USER_PIN) == C.CKR_PIN_INCORRECT
    assert raw.login(h, new.decode()) == C.CKR_OK
    assert raw.C_InitPIN(h, old, len(old)) == C.CKR_USER_NOT_LOGGED_IN  # needs the SO
    ro = raw.open(slot, rw=False)
    assert raw.C_SetPIN(ro, new, len(new), old, len(old)) == C.CKR_SESSION_READ_ONLY
    assert raw.C_CloseAllSessions(slot) == C.CKR_OK
    h = raw.open(slot)
    assert raw.login(h, SO_PIN, C.CKU_SO) == C.CKR_OK
    assert raw.C_InitPIN(h, old, len(old)) == C.CKR_OK
    assert raw.C_Logout(h) == C.CKR_OK
    assert raw.login(h, USER_PIN) == C.CKR_OK


def test_init_token(raw: RawModule, card_env: CardEnv) -> None:
    serial, slot = _other_card(card_env, "Init card")
    with card_env.token(serial).open(rw=True, user_pin=USER_PIN) as s:
        s.generate_keypair(
            KeyType.EC, mechanism=Mechanism.EC_KEY_PAIR_GEN, public_template={Attribute.EC_PARAMS: _p256()}, store=True
        )
    label = b"Fresh card".ljust(32, b" ")
    so = SO_PIN.encode()
    h = raw.open(slot)
    assert raw.C_InitToken(slot, so, len(so), label) == C.CKR_SESSION_EXISTS
    assert raw.C_CloseSession(h) == C.CKR_OK
    assert raw.C_InitToken(slot, b"99887766", 8, label) == C.CKR_PIN_INCORRECT
    assert raw.C_InitToken(slot, so, len(so), label) == C.CKR_OK
    token = card_env.token(serial)
    assert token.label == "Fresh card"
    assert not token.flags & C.CKF_USER_PIN_INITIALIZED
    h = raw.open(slot)
    assert raw.login(h, USER_PIN) == C.CKR_USER_PIN_NOT_INITIALIZED
    assert raw.login(h, SO_PIN, C.CKU_SO) == C.CKR_OK
    assert raw.find(h, [(C.CKA_CLASS, ulong(C.CKO_PUBLIC_KEY))]) == []
    assert raw.C_InitPIN(h, b"604938", 6) == C.CKR_OK
    assert raw.C_Logout(h) == C.CKR_OK
    assert raw.login(h, "604938") == C.CKR_OK
    assert raw.find(h, [(C.CKA_CLASS, ulong(C.CKO_PRIVATE_KEY))]) == []
    # A host that passes the label as a C string (PyKCS11): the label ends at the NUL, whatever follows.
    assert raw.C_CloseSession(h) == C.CKR_OK
    assert raw.C_InitToken(slot, so, len(so), b"C string\x00".ljust(32, b"\xff")) == C.CKR_OK
    assert card_env.token(serial).label == "C string"


def test_always_authenticate_needs_a_context_login_per_signature(card_env: CardEnv) -> None:
    with card_env.token().open(rw=True, user_pin=USER_PIN) as s:
        pub, priv = s.generate_keypair(
            KeyType.RSA, 2048, label="always-auth", private_template={Attribute.ALWAYS_AUTHENTICATE: True}
        )
        assert priv[Attribute.ALWAYS_AUTHENTICATE]
        key = public_key_of(pub)
        with pytest.raises(pkcs11.UserNotLoggedIn):
            priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
        for _ in range(2):
            sig = priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS, pin=USER_PIN)
            key.verify(sig, b"data", padding.PKCS1v15(), hashes.SHA256())
        with pytest.raises(pkcs11.UserNotLoggedIn):
            priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
        with pytest.raises(pkcs11.PinIncorrect):
            priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS, pin="135792")
        ordinary = s.generate_keypair(KeyType.RSA, 2048)[1]
        ordinary.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)  # no per-use PIN for other keys


def test_public_objects_and_certificates_visible_without_login(
    card_env: CardEnv, key_pair: tuple[bytes, bytes]
) -> None:
    key_id, modulus = key_pair
    with card_env.token().open() as s:
        (pub,) = list(s.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key_id}))
        assert pub[Attribute.MODULUS] == modulus
        assert list(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})) == []


def test_cards_appear_and_leave_while_loaded(raw: RawModule, card_env: CardEnv) -> None:
    serial, slot = _other_card(card_env, "Passing card")
    seen = []
    event = CK_ULONG()
    while raw.C_WaitForSlotEvent(C.CKF_DONT_BLOCK, ctypes.byref(event), None) == C.CKR_OK:
        seen.append(event.value)
    assert slot in seen
    assert raw.C_WaitForSlotEvent(C.CKF_DONT_BLOCK, ctypes.byref(event), None) == C.CKR_NO_EVENT
    h = raw.open(slot)
    vsc(card_env.home, "card", "delete", serial, "--yes")
    assert slot not in [int(s.slot_id) for s in card_env.lib.get_slots(token_present=True)]
    assert raw.C_WaitForSlotEvent(C.CKF_DONT_BLOCK, ctypes.byref(event), None) == C.CKR_OK
    assert event.value == slot
    info = CK_SESSION_INFO()
    assert raw.C_GetSessionInfo(h, ctypes.byref(info)) in (C.CKR_DEVICE_REMOVED, C.CKR_SESSION_HANDLE_INVALID)


def test_token_info_and_stable_slot_ids(raw: RawModule, slot: int, card_env: CardEnv) -> None:
    token = card_env.token()
    assert token.label == "Test card"
    assert token.manufacturer_id == "vsc-provider"
    flags = token.flags
    for flag in (C.CKF_TOKEN_INITIALIZED, C.CKF_LOGIN_REQUIRED, C.CKF_USER_PIN_INITIALIZED, C.CKF_RNG):
        assert flags & flag
    h1, h2 = raw.open(slot), raw.open(slot, rw=False)
    buf = ctypes.create_string_buffer(512)
    assert raw.C_GetTokenInfo(slot, buf) == C.CKR_OK
    # ulSessionCount and ulRwSessionCount follow label(32) manufacturer(32) model(16) serial(16) flags maxSess
    ul = ctypes.sizeof(CK_ULONG)
    base = 96 + ul * 2
    assert CK_ULONG.from_buffer(buf, base).value == 2
    assert CK_ULONG.from_buffer(buf, base + 2 * ul).value == 1
    del h1, h2
    reinitialize(card_env.lib)
    assert int(card_env.token().slot.slot_id) == slot
