"""CKM_HOTP and CKM_VSC_TOTP through the module's C ABI (ctypes, as a C host calls it) and PyKCS11: the
RFC 4226/6238 vectors as CK_OTP_SIGNATURE_INFO answers whose pointers point into the caller's buffer, the
length query never taking a second HOTP code, CK_OTP_PARAMS, and the errors the standard names."""

from __future__ import annotations

import base64
import ctypes
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from p11_support import USER_PIN, CardEnv, RawModule, make_template, mechanism, vsc

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.token import access, otp, otp_keys
from vsc_provider.token.engine import Engine

RFC_SECRET = b"12345678901234567890"
RFC_SEEDS = {"SHA1": RFC_SECRET, "SHA256": RFC_SECRET + b"123456789012", "SHA512": RFC_SECRET * 3 + b"1234"}
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
RFC6238 = {
    59: ("94287082", "46119246", "90693936"),
    1111111109: ("07081804", "68084774", "25091201"),
    1234567890: ("89005924", "91819424", "93441116"),
    20000000000: ("65353130", "77737706", "47863826"),
}
TIMES = {
    59: b"19700101000059",
    1111111109: b"20050318015829",
    1234567890: b"20090213233130",
    20000000000: b"26031011113320",
}


class CK_OTP_PARAM(ctypes.Structure):
    _fields_ = [("type", ctypes.c_ulong), ("pValue", ctypes.c_void_p), ("ulValueLen", ctypes.c_ulong)]


class CK_OTP_PARAMS(ctypes.Structure):
    _fields_ = [("pParams", ctypes.POINTER(CK_OTP_PARAM)), ("ulCount", ctypes.c_ulong)]


def otp_params(*pairs: tuple[int, bytes]) -> CK_OTP_PARAMS:
    array = (CK_OTP_PARAM * len(pairs))()
    keep = []
    for i, (kind, value) in enumerate(pairs):
        buf = ctypes.create_string_buffer(value, len(value))
        keep.append(buf)
        array[i] = CK_OTP_PARAM(kind, ctypes.cast(buf, ctypes.c_void_p), len(value))
    params = CK_OTP_PARAMS(array, len(pairs))
    params.keep = (array, keep)  # type: ignore[attr-defined]
    return params


def read_signature_info(buf: ctypes.Array, n: int) -> dict[int, bytes]:
    """A CK_OTP_SIGNATURE_INFO in `buf`: every pointer must point inside the n bytes written."""
    base = ctypes.addressof(buf)
    p_params, count = struct.unpack_from("@PL", bytes(buf), 0)
    assert base <= p_params < base + n
    out = {}
    for i in range(count):
        kind, p_value, length = struct.unpack_from("@LPL", bytes(buf), p_params - base + 24 * i)
        assert base <= p_value and p_value + length <= base + n
        out[kind] = ctypes.string_at(p_value, length)
    return out


@pytest.fixture(scope="module")
def keys(card_env: CardEnv) -> dict[str, int]:
    """OTP keys put on the card by another engine on the same store (as the CLI would): their handles."""
    engine = Engine(card_env.home / "store.sqlite", card_env.home / "device.key")
    card = next(iter(engine.cards.values()))
    access.login(engine, card, USER_PIN.encode())
    made = {"hotp": otp_keys.add(engine, card, otp.OtpSpec("hotp"), RFC_SECRET, "RFC", "4226")}
    for name in RFC_SEEDS:
        made[name] = otp_keys.add(engine, card, otp.OtpSpec("totp", name, 8), RFC_SEEDS[name], "RFC", f"6238-{name}")
    access.logout(engine, card)
    return {name: obj.handle for name, obj in made.items()}


@pytest.fixture(scope="module")
def raw(card_env: CardEnv, module_path: str, keys: dict[str, int]) -> Iterator[tuple[RawModule, int]]:
    m = RawModule(module_path)
    h = m.open(int(card_env.slot().slot_id))
    assert m.login(h, USER_PIN) == C.CKR_OK
    yield m, h
    m.C_CloseSession(h)


def sign(m: RawModule, h: int, key: int, mech: int, params: CK_OTP_PARAMS | None = None) -> dict[int, bytes]:
    assert m.C_SignInit(h, ctypes.byref(mechanism(mech, params)), key) == C.CKR_OK
    n = ctypes.c_ulong()
    assert m.C_Sign(h, None, 0, None, ctypes.byref(n)) == C.CKR_OK  # the length query: no code taken
    buf = (ctypes.c_ubyte * n.value)()
    assert m.C_Sign(h, None, 0, buf, ctypes.byref(n)) == C.CKR_OK
    return read_signature_info(buf, n.value)


def stored_counter(m: RawModule, h: int, key: int) -> int:
    value = ctypes.create_string_buffer(8)
    attrs, _keep = make_template([(C.CKA_OTP_COUNTER, b"\0" * 8)])
    attrs[0].pValue = ctypes.cast(value, ctypes.c_void_p)
    assert m.C_GetAttributeValue(h, key, attrs, 1) == C.CKR_OK
    return int.from_bytes(value.raw, "big")


def read_attributes(m: RawModule, h: int, key: int, types: list[int]) -> dict[int, bytes]:
    """C_GetAttributeValue as a C host calls it: the lengths first (NULL pValue), then the values."""
    attrs, _keep = make_template([(t, b"") for t in types])
    assert m.C_GetAttributeValue(h, key, attrs, len(types)) == C.CKR_OK
    buffers = [ctypes.create_string_buffer(attrs[i].ulValueLen) for i in range(len(types))]
    for i, buf in enumerate(buffers):
        attrs[i].pValue = ctypes.cast(buf, ctypes.c_void_p)
    assert m.C_GetAttributeValue(h, key, attrs, len(types)) == C.CKR_OK
    return {t: buffers[i].raw[: attrs[i].ulValueLen] for i, t in enumerate(types)}


def test_the_otp_attributes_of_keys_added_by_the_cli_read_back(card_env: CardEnv, raw: tuple[RawModule, int]) -> None:
    """`vsc otp add` (another process) with non-default digits, period and hash; the module reads them back."""
    m, h = raw
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    for link in (
        f"otpauth://totp/ACME:carol@example.com?secret={secret}&issuer=ACME&digits=8&period=45&algorithm=SHA256",
        f"otpauth://hotp/VPN:dave?secret={secret}&issuer=VPN&digits=7&counter=9",
    ):
        vsc(card_env.home, "otp", "add", "--card", "Test card", link, "--pin", USER_PIN)
    common = [C.CKA_KEY_TYPE, C.CKA_OTP_FORMAT, C.CKA_OTP_LENGTH, C.CKA_OTP_SERVICE_IDENTIFIER]
    common += [C.CKA_OTP_USER_IDENTIFIER, C.CKA_VSC_OTP_HASH]

    def key_of(account: bytes) -> int:
        found = m.find(h, [(C.CKA_CLASS, A.ULONG.pack(C.CKO_OTP_KEY)), (C.CKA_OTP_USER_IDENTIFIER, account)])
        assert len(found) == 1
        return found[0]

    totp_key, hotp_key = key_of(b"carol@example.com"), key_of(b"dave")
    assert read_attributes(m, h, totp_key, [*common, C.CKA_OTP_TIME_INTERVAL]) == {
        C.CKA_KEY_TYPE: A.ULONG.pack(C.CKK_VSC_TOTP),
        C.CKA_OTP_FORMAT: A.ULONG.pack(C.CK_OTP_FORMAT_DECIMAL),
        C.CKA_OTP_LENGTH: A.ULONG.pack(8),
        C.CKA_OTP_SERVICE_IDENTIFIER: b"ACME",
        C.CKA_OTP_USER_IDENTIFIER: b"carol@example.com",
        C.CKA_VSC_OTP_HASH: A.ULONG.pack(C.CKM_SHA256),
        C.CKA_OTP_TIME_INTERVAL: A.ULONG.pack(45),
    }
    assert read_attributes(m, h, hotp_key, [*common, C.CKA_OTP_COUNTER]) == {
        C.CKA_KEY_TYPE: A.ULONG.pack(C.CKK_HOTP),
        C.CKA_OTP_FORMAT: A.ULONG.pack(C.CK_OTP_FORMAT_DECIMAL),
        C.CKA_OTP_LENGTH: A.ULONG.pack(7),
        C.CKA_OTP_SERVICE_IDENTIFIER: b"VPN",
        C.CKA_OTP_USER_IDENTIFIER: b"dave",
        C.CKA_VSC_OTP_HASH: A.ULONG.pack(C.CKM_SHA_1),
        C.CKA_OTP_COUNTER: (9).to_bytes(8, "big"),
    }
    # A code taken by the CLI moves the counter the module reads; the module's next code is the one after.
    vsc(card_env.home, "otp", "code", "--card", "Test card", "VPN:dave", "--pin", USER_PIN)
    assert stored_counter(m, h, hotp_key) == 10
    seed = base64.b32decode(secret)
    assert sign(m, h, hotp_key, C.CKM_HOTP)[C.CK_OTP_VALUE] == otp.hotp(seed, 10, 7).encode()
    assert sign(m, h, totp_key, C.CKM_VSC_TOTP, otp_params((C.CK_OTP_TIME, TIMES[59])))[C.CK_OTP_VALUE] == (
        otp.totp(seed, 59, otp.OtpSpec("totp", "SHA256", 8, 45)).code.encode()
    )


def test_hotp_gives_the_rfc4226_codes_one_counter_each(raw: tuple[RawModule, int], keys: dict[str, int]) -> None:
    m, h = raw
    for i, expected in enumerate(RFC4226):
        info = sign(m, h, keys["hotp"], C.CKM_HOTP)
        assert info == {C.CK_OTP_VALUE: expected.encode(), C.CK_OTP_COUNTER: i.to_bytes(8, "big")}
    assert stored_counter(m, h, keys["hotp"]) == 10


def test_a_short_buffer_keeps_the_code_for_the_next_call(raw: tuple[RawModule, int], keys: dict[str, int]) -> None:
    m, h = raw
    start = stored_counter(m, h, keys["hotp"])
    assert m.C_SignInit(h, ctypes.byref(mechanism(C.CKM_HOTP)), keys["hotp"]) == C.CKR_OK
    n = ctypes.c_ulong(4)
    small = (ctypes.c_ubyte * 4)()
    assert m.C_Sign(h, None, 0, small, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    buf = (ctypes.c_ubyte * n.value)()
    assert m.C_Sign(h, None, 0, buf, ctypes.byref(n)) == C.CKR_OK
    info = read_signature_info(buf, n.value)
    assert info[C.CK_OTP_COUNTER] == start.to_bytes(8, "big")
    assert info[C.CK_OTP_VALUE] == otp.hotp(RFC_SECRET, start).encode()
    assert stored_counter(m, h, keys["hotp"]) == start + 1


def test_hotp_at_a_given_counter_is_a_look_up(raw: tuple[RawModule, int], keys: dict[str, int]) -> None:
    m, h = raw
    before = stored_counter(m, h, keys["hotp"])
    params = otp_params((C.CK_OTP_COUNTER, (5).to_bytes(8, "big")), (C.CK_OTP_OUTPUT_LENGTH, A.ULONG.pack(6)))
    assert sign(m, h, keys["hotp"], C.CKM_HOTP, params)[C.CK_OTP_VALUE] == RFC4226[5].encode()
    assert stored_counter(m, h, keys["hotp"]) == before


@pytest.mark.parametrize("at", sorted(RFC6238))
def test_totp_gives_the_rfc6238_codes(raw: tuple[RawModule, int], keys: dict[str, int], at: int) -> None:
    m, h = raw
    for name, expected in zip(RFC_SEEDS, RFC6238[at], strict=True):
        info = sign(m, h, keys[name], C.CKM_VSC_TOTP, otp_params((C.CK_OTP_TIME, TIMES[at])))
        assert info == {C.CK_OTP_VALUE: expected.encode(), C.CK_OTP_TIME: TIMES[at]}


def test_totp_now_and_next(raw: tuple[RawModule, int], keys: dict[str, int]) -> None:
    import time

    m, h = raw
    for _ in range(3):  # a step boundary may pass between two calls: then ask again
        now = int(time.time())
        current = sign(m, h, keys["SHA1"], C.CKM_VSC_TOTP)
        following = sign(m, h, keys["SHA1"], C.CKM_VSC_TOTP, otp_params((C.CK_OTP_FLAGS, A.ULONG.pack(C.CKF_NEXT_OTP))))
        if int(time.time()) // 30 == now // 30:
            break
    spec = otp.OtpSpec("totp", "SHA1", 8)
    assert current[C.CK_OTP_VALUE] == otp.totp(RFC_SECRET, now, spec).code.encode()
    assert following[C.CK_OTP_VALUE] == otp.totp(RFC_SECRET, now + 30, spec).code.encode()


def test_sign_final_alone_gives_the_code(raw: tuple[RawModule, int], keys: dict[str, int]) -> None:
    m, h = raw
    params = otp_params((C.CK_OTP_TIME, TIMES[59]))
    assert m.C_SignInit(h, ctypes.byref(mechanism(C.CKM_VSC_TOTP, params)), keys["SHA256"]) == C.CKR_OK
    n = ctypes.c_ulong()
    assert m.C_SignFinal(h, None, ctypes.byref(n)) == C.CKR_OK
    buf = (ctypes.c_ubyte * n.value)()
    assert m.C_SignFinal(h, buf, ctypes.byref(n)) == C.CKR_OK
    assert read_signature_info(buf, n.value)[C.CK_OTP_VALUE] == RFC6238[59][1].encode()


@pytest.mark.parametrize(
    ("key", "mech", "params", "rv"),
    [
        ("SHA1", C.CKM_HOTP, None, C.CKR_MECHANISM_INVALID),
        ("hotp", C.CKM_VSC_TOTP, None, C.CKR_MECHANISM_INVALID),
        ("SHA1", C.CKM_VSC_TOTP, [(C.CK_OTP_TIME, b"2009-02-13 23:31")], C.CKR_MECHANISM_PARAM_INVALID),
        ("SHA1", C.CKM_VSC_TOTP, [(C.CK_OTP_OUTPUT_LENGTH, A.ULONG.pack(9))], C.CKR_MECHANISM_PARAM_INVALID),
        ("SHA1", C.CKM_VSC_TOTP, [(C.CK_OTP_OUTPUT_FORMAT, A.ULONG.pack(1))], C.CKR_MECHANISM_PARAM_INVALID),
        ("hotp", C.CKM_HOTP, [(C.CK_OTP_COUNTER, b"\x01")], C.CKR_MECHANISM_PARAM_INVALID),
        ("hotp", C.CKM_HOTP, [(C.CK_OTP_FLAGS, A.ULONG.pack(C.CKF_NEXT_OTP))], C.CKR_MECHANISM_PARAM_INVALID),
        ("hotp", C.CKM_HOTP, [(0x99, b"")], C.CKR_MECHANISM_PARAM_INVALID),
    ],
)
def test_refused_requests(
    raw: tuple[RawModule, int], keys: dict[str, int], key: str, mech: int, params: list | None, rv: int
) -> None:
    m, h = raw
    before = stored_counter(m, h, keys["hotp"])
    p = otp_params(*params) if params else None
    assert m.C_SignInit(h, ctypes.byref(mechanism(mech, p)), keys[key]) == rv
    assert stored_counter(m, h, keys["hotp"]) == before


def test_data_is_refused_and_a_null_param_array_too(raw: tuple[RawModule, int], keys: dict[str, int]) -> None:
    m, h = raw
    assert m.C_SignInit(h, ctypes.byref(mechanism(C.CKM_HOTP)), keys["hotp"]) == C.CKR_OK
    n = ctypes.c_ulong(256)
    buf = (ctypes.c_ubyte * 256)()
    assert m.C_Sign(h, b"data", 4, buf, ctypes.byref(n)) == C.CKR_DATA_LEN_RANGE
    broken = CK_OTP_PARAMS(None, 3)
    assert m.C_SignInit(h, ctypes.byref(mechanism(C.CKM_HOTP, broken)), keys["hotp"]) == C.CKR_MECHANISM_PARAM_INVALID


def test_the_secret_is_never_an_attribute_and_logout_stops_codes(
    card_env: CardEnv, module_path: str, keys: dict[str, int]
) -> None:
    m = RawModule(module_path)
    h = m.open(int(card_env.slot().slot_id))
    try:
        attrs, _keep = make_template([(C.CKA_VALUE, b"\0" * 64)])
        rv = m.C_GetAttributeValue(h, keys["hotp"], attrs, 1)
        assert rv in (C.CKR_ATTRIBUTE_SENSITIVE, C.CKR_ATTRIBUTE_TYPE_INVALID)
        assert m.C_Logout(h) == C.CKR_OK  # the login is the application's: every session's
        assert m.C_SignInit(h, ctypes.byref(mechanism(C.CKM_HOTP)), keys["hotp"]) == C.CKR_USER_NOT_LOGGED_IN
        # Names are public: found without the PIN.
        found = m.find(h, [(C.CKA_CLASS, A.ULONG.pack(C.CKO_OTP_KEY)), (C.CKA_OTP_SERVICE_IDENTIFIER, b"RFC")])
        assert sorted(found) == sorted(keys.values())
    finally:
        assert m.login(h, USER_PIN) == C.CKR_OK
        m.C_CloseSession(h)


def test_mechanism_info(card_env: CardEnv, raw: tuple[RawModule, int]) -> None:
    m, _ = raw
    info = (ctypes.c_ulong * 3)()
    for mech in (C.CKM_HOTP, C.CKM_VSC_TOTP):
        assert m.C_GetMechanismInfo(int(card_env.slot().slot_id), mech, info) == C.CKR_OK
        assert info[2] & C.CKF_SIGN


def test_pykcs11_takes_a_hotp_code(card_env: CardEnv, module_path: str, keys: dict[str, int]) -> None:
    script = f"import sys; sys.path[:0] = [{str(Path(__file__).parents[2])!r}, {str(Path(__file__).parent)!r}]; "
    script += "from tests.pkcs11.test_p11_otp import pykcs11_code; "
    script += f"pykcs11_code({module_path!r})"
    env = {**os.environ, "VSC_HOME": str(card_env.home)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    counter, code = result.stdout.split()
    assert code == otp.hotp(RFC_SECRET, int(counter))


def pykcs11_code(module_path: str) -> None:
    """In a process of its own: a HOTP code through PyKCS11, printed as `counter code`."""
    import PyKCS11

    lib = PyKCS11.PyKCS11Lib()
    lib.load(module_path)
    try:
        session = lib.openSession(lib.getSlotList(tokenPresent=True)[0])
        session.login(USER_PIN)
        key = session.findObjects([(PyKCS11.CKA_CLASS, C.CKO_OTP_KEY), (C.CKA_OTP_USER_IDENTIFIER, b"4226")])[0]
        # PyKCS11's sign() refuses empty data before calling the module: its C_SignInit and C_SignFinal
        # (the length query, then the call) are what a PyKCS11 program uses for OTP codes.
        assert session.lib.C_SignInit(session.session, PyKCS11.Mechanism(C.CKM_HOTP).to_native(), key) == 0
        answer = PyKCS11.ckbytelist()
        for _ in range(2):
            assert session.lib.C_SignFinal(session.session, answer) == 0
        out = bytes(answer)
        # PyKCS11 copies the answer out of its buffer: the offsets still hold (pointers minus the buffer's start).
        p_params, count = struct.unpack_from("@PL", out, 0)
        base = p_params - 16
        found = {}
        for i in range(count):
            kind, p_value, length = struct.unpack_from("@LPL", out, 16 + 24 * i)
            found[kind] = out[p_value - base : p_value - base + length]
        print(int.from_bytes(found[C.CK_OTP_COUNTER], "big"), found[C.CK_OTP_VALUE].decode())
        session.logout()
    finally:
        lib.unload()


def spec_template(**changes: bytes) -> list[tuple[int, bytes]]:
    """The HOTP key template of the PKCS#11 specification's example, with changes (attribute name: value)."""
    values = {
        C.CKA_CLASS: A.ULONG.pack(C.CKO_OTP_KEY),
        C.CKA_KEY_TYPE: A.ULONG.pack(C.CKK_HOTP),
        C.CKA_TOKEN: b"\x01",
        C.CKA_SENSITIVE: b"\x01",
        C.CKA_LABEL: b"HOTP secret key object",
        C.CKA_SIGN: b"\x01",
        C.CKA_VERIFY: b"\x01",
        C.CKA_ID: b"\x42",
        C.CKA_OTP_FORMAT: A.ULONG.pack(C.CK_OTP_FORMAT_DECIMAL),
        C.CKA_OTP_LENGTH: A.ULONG.pack(6),
        C.CKA_OTP_COUNTER: (2).to_bytes(8, "big"),
        C.CKA_VALUE: RFC_SECRET,
    }
    for name, value in changes.items():
        values[getattr(C, name)] = value
    return list(values.items())


def create(m: RawModule, h: int, pairs: list[tuple[int, bytes]]) -> tuple[int, int]:
    attrs, _keep = make_template(pairs)
    handle = ctypes.c_ulong()
    rv = m.C_CreateObject(h, attrs, len(pairs), ctypes.byref(handle))
    return int(rv), handle.value


def test_create_object_with_the_standard_hotp_template(raw: tuple[RawModule, int]) -> None:
    m, h = raw
    rv, key = create(m, h, spec_template())
    assert rv == C.CKR_OK
    assert sign(m, h, key, C.CKM_HOTP)[C.CK_OTP_VALUE] == RFC4226[2].encode()
    assert stored_counter(m, h, key) == 3
    attrs, _keep = make_template([(C.CKA_VALUE, b"\0" * 64)])
    assert m.C_GetAttributeValue(h, key, attrs, 1) == C.CKR_ATTRIBUTE_SENSITIVE
    copy = ctypes.c_ulong()
    assert m.C_CopyObject(h, key, None, 0, ctypes.byref(copy)) == C.CKR_ACTION_PROHIBITED
    assert m.C_Logout(h) == C.CKR_OK
    try:
        assert m.C_DestroyObject(h, key) == C.CKR_USER_NOT_LOGGED_IN  # its names are public, its secret not
    finally:
        assert m.login(h, USER_PIN) == C.CKR_OK
    assert m.C_DestroyObject(h, key) == C.CKR_OK


@pytest.mark.parametrize(
    ("changes", "rv"),
    [
        ({"CKA_TOKEN": b"\x00"}, C.CKR_TEMPLATE_INCONSISTENT),
        ({"CKA_EXTRACTABLE": b"\x01"}, C.CKR_TEMPLATE_INCONSISTENT),
        ({"CKA_SENSITIVE": b"\x00"}, C.CKR_TEMPLATE_INCONSISTENT),
        ({"CKA_KEY_TYPE": A.ULONG.pack(C.CKK_AES)}, C.CKR_TEMPLATE_INCONSISTENT),
        ({"CKA_OTP_LENGTH": A.ULONG.pack(4)}, C.CKR_ATTRIBUTE_VALUE_INVALID),
        ({"CKA_OTP_FORMAT": A.ULONG.pack(C.CK_OTP_FORMAT_BINARY)}, C.CKR_ATTRIBUTE_VALUE_INVALID),
        ({"CKA_OTP_COUNTER": b"\x01\x02"}, C.CKR_ATTRIBUTE_VALUE_INVALID),
        ({"CKA_VALUE": b""}, C.CKR_ATTRIBUTE_VALUE_INVALID),
        ({"CKA_VSC_OTP_HASH": A.ULONG.pack(C.CKM_SHA384)}, C.CKR_ATTRIBUTE_VALUE_INVALID),
    ],
)
def test_create_object_refuses(raw: tuple[RawModule, int], changes: dict[str, bytes], rv: int) -> None:
    m, h = raw
    assert create(m, h, spec_template(**changes))[0] == rv


def test_create_object_of_a_totp_key(raw: tuple[RawModule, int]) -> None:
    m, h = raw
    changes = {
        "CKA_KEY_TYPE": A.ULONG.pack(C.CKK_VSC_TOTP),
        "CKA_VSC_OTP_HASH": A.ULONG.pack(C.CKM_SHA512),
        "CKA_OTP_LENGTH": A.ULONG.pack(8),
        "CKA_OTP_TIME_INTERVAL": A.ULONG.pack(30),
        "CKA_OTP_COUNTER": b"",
        "CKA_VALUE": RFC_SEEDS["SHA512"],
        "CKA_PRIVATE": b"\x01",
    }
    pairs = [(a, v) for a, v in spec_template(**changes) if a != C.CKA_OTP_COUNTER]
    rv, key = create(m, h, pairs)
    assert rv == C.CKR_OK
    info = sign(m, h, key, C.CKM_VSC_TOTP, otp_params((C.CK_OTP_TIME, TIMES[1234567890])))
    assert info[C.CK_OTP_VALUE] == RFC6238[1234567890][2].encode()
    assert m.C_DestroyObject(h, key) == C.CKR_OK
