"""Card policies through the built module: a compatible card does what SoftHSM rigs expect (short PINs of any
bytes, RSA-1024, every curve, keys usable without login, no waiting periods), a strict card refuses each of
these as before, neither changes its policy, and neither accepts a PIN followed by NUL bytes.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from asn1crypto import core as asn1_core
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from p11_support import (
    CK_MECHANISM,
    SO_PIN,
    USER_PIN,
    RawModule,
    make_template,
    public_key_of,
    reinitialize,
    store_loaded,
    ulong,
    vsc,
)
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from vsc_provider.ck import constants as C

COMPAT_PIN = "1234"
COMPAT_SO_PIN = "5678"
P192 = "1.2.840.10045.3.1.1"
SECP256K1 = "1.3.132.0.10"
BRAINPOOL_P384 = "1.3.36.3.3.2.8.1.1.11"


def _create(home: Path, label: str, policy: str, delay: str = "0.05") -> str:
    pins = (
        ("--pin", COMPAT_PIN, "--so-pin", COMPAT_SO_PIN)
        if policy == "compatible"
        else ("--pin", USER_PIN, "--so-pin", SO_PIN)
    )
    out = vsc(home, "card", "create", "--label", label, *pins, "--policy", policy, "--json", delay=delay)
    created = json.loads(out.stdout)
    assert created["policy"] == policy
    return str(created["serial"])


class Cards:
    def __init__(self, lib: pkcs11.lib, raw: RawModule, home: Path) -> None:
        self.lib, self.raw, self.home = lib, raw, home
        # Strict waiting periods of 30 s: a try right after the third wrong one is surely inside one.
        self.strict = _create(home, "Strict card", "strict", delay="30")
        self.compat = _create(home, "Compat card", "compatible")

    def token(self, serial: str) -> pkcs11.Token:
        return self.lib.get_token(token_serial=serial.encode())

    def slot(self, serial: str) -> int:
        return int(self.token(serial).slot.slot_id)

    def new_card(self, label: str, policy: str) -> str:
        serial = _create(self.home, label, policy, delay="30")
        self.lib.get_slots()  # the module takes in the new card at its next look at the store
        return serial


@pytest.fixture(scope="module")
def cards(p11lib: pkcs11.lib, module_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cards]:
    home = tmp_path_factory.mktemp("vsc-policy")
    made = Cards(p11lib, RawModule(module_path), home)
    with store_loaded(p11lib, home):
        yield made


@pytest.fixture(autouse=True)
def _close_sessions(cards: Cards) -> Iterator[None]:
    yield
    for serial in (cards.strict, cards.compat):
        cards.raw.C_CloseAllSessions(cards.slot(serial))


class CK_TOKEN_INFO(ctypes.Structure):
    _fields_ = [
        ("label", ctypes.c_char * 32),
        ("manufacturerID", ctypes.c_char * 32),
        ("model", ctypes.c_char * 16),
        ("serialNumber", ctypes.c_char * 16),
        ("flags", ctypes.c_ulong),
        ("ulMaxSessionCount", ctypes.c_ulong),
        ("ulSessionCount", ctypes.c_ulong),
        ("ulMaxRwSessionCount", ctypes.c_ulong),
        ("ulRwSessionCount", ctypes.c_ulong),
        ("ulMaxPinLen", ctypes.c_ulong),
        ("ulMinPinLen", ctypes.c_ulong),
        ("rest", ctypes.c_ubyte * 64),
    ]


def _curve(oid: str) -> bytes:
    return bytes(asn1_core.ObjectIdentifier(oid).dump())


def _login_rv(raw: RawModule, h: int, pin: bytes, user_type: int = C.CKU_USER) -> int:
    return int(raw.C_Login(h, user_type, pin, len(pin)))


# --- policy shown and kept ---------------------------------------------------------------------


def test_policy_is_shown_and_token_info_follows_it(cards: Cards) -> None:
    shown = json.loads(vsc(cards.home, "card", "show", cards.compat, "--json").stdout)
    assert shown["policy"] == "compatible"
    assert json.loads(vsc(cards.home, "card", "show", cards.strict, "--json").stdout)["policy"] == "strict"
    listed = {c["serial"]: c["policy"] for c in json.loads(vsc(cards.home, "card", "list", "--json").stdout)}
    assert listed == {cards.strict: "strict", cards.compat: "compatible"}
    human = vsc(cards.home, "card", "show", cards.compat).stdout
    assert "compatible policy" in human
    for serial, lengths in ((cards.compat, (4, 255)), (cards.strict, (6, 32))):
        info = CK_TOKEN_INFO()
        assert cards.raw.C_GetTokenInfo(cards.slot(serial), ctypes.byref(info)) == C.CKR_OK
        assert (info.ulMinPinLen, info.ulMaxPinLen) == lengths


def test_new_compatible_card_holds_no_object(cards: Cards) -> None:
    """Rigs written for SoftHSM expect an empty new token; strict cards keep the profile object NSS reads."""
    found = {}
    for serial in (cards.compat, cards.strict):
        h = cards.raw.open(cards.slot(serial), rw=False)
        found[serial] = [cards.raw.find(h, [(C.CKA_CLASS, ulong(C.CKO_PROFILE))]), cards.raw.find(h, [])]
        cards.raw.C_CloseSession(h)
    assert found[cards.compat] == [[], []]
    assert len(found[cards.strict][0]) == 1


def test_cli_refuses_an_unknown_policy_and_defaults_to_strict(cards: Cards) -> None:
    bad = vsc(
        cards.home,
        "card",
        "create",
        "--label",
        "x",
        "--pin",
        USER_PIN,
        "--so-pin",
        SO_PIN,
        "--policy",
        "lax",
        check=False,
    )
    assert bad.returncode != 0 and "lax" in bad.stderr
    out = vsc(cards.home, "card", "create", "--label", "Default card", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json")
    serial = json.loads(out.stdout)["serial"]
    assert json.loads(out.stdout)["policy"] == "strict"
    # A compatible card's CLI takes a short PIN that a strict card refuses with a one-line error.
    short = vsc(cards.home, "card", "create", "--label", "y", "--pin", "1234", "--so-pin", "5678", check=False)
    assert short.returncode != 0 and "Traceback" not in short.stderr
    vsc(cards.home, "card", "delete", serial, "--yes")


def test_init_token_keeps_the_policy(cards: Cards) -> None:
    raw = cards.raw
    for policy, so_pin in (("compatible", COMPAT_SO_PIN), ("strict", SO_PIN)):
        serial = cards.new_card(f"Init {policy}", policy)
        slot = cards.slot(serial)
        so = so_pin.encode()
        label = b"Reinitialised".ljust(32, b" ")
        assert raw.C_InitToken(slot, so, len(so), label) == C.CKR_OK
        h = raw.open(slot)
        assert _login_rv(raw, h, so, C.CKU_SO) == C.CKR_OK
        short = b"4321"
        expected = C.CKR_OK if policy == "compatible" else C.CKR_PIN_LEN_RANGE
        assert raw.C_InitPIN(h, short, len(short)) == expected
        raw.C_CloseAllSessions(slot)
        shown = json.loads(vsc(cards.home, "card", "show", serial, "--json").stdout)
        assert shown["policy"] == policy
    # No command sets a policy: `vsc card` offers create, list, show, delete and the like, none with --policy.
    helps = vsc(cards.home, "card", "--help").stdout
    for command in [line.split()[0] for line in helps.split("Commands:")[1].splitlines() if line.strip()]:
        if command != "create":
            assert "--policy" not in vsc(cards.home, "card", command, "--help").stdout


# --- PINs ------------------------------------------------------------------------------------------


def test_compatible_pins_of_any_bytes_strict_pins_of_digits(cards: Cards) -> None:
    raw = cards.raw
    h = raw.open(cards.slot(cards.compat))
    assert raw.login(h, COMPAT_PIN) == C.CKR_OK
    odd = b"p\x00ss \xff w0rd"
    old = COMPAT_PIN.encode()
    assert raw.C_SetPIN(h, old, len(old), odd, len(odd)) == C.CKR_OK
    assert raw.C_SetPIN(h, odd, len(odd), b"abc", 3) == C.CKR_PIN_LEN_RANGE
    assert raw.C_SetPIN(h, odd, len(odd), b"x" * 256, 256) == C.CKR_PIN_LEN_RANGE
    raw.C_Logout(h)
    assert _login_rv(raw, h, odd) == C.CKR_OK
    raw.C_Logout(h)
    assert _login_rv(raw, h, odd[:1]) == C.CKR_PIN_INCORRECT  # the PIN's first byte only: NUL ends nothing
    assert raw.C_SetPIN(h, odd, len(odd), old, len(old)) == C.CKR_OK
    assert raw.login(h, COMPAT_PIN) == C.CKR_OK
    strict = raw.open(cards.slot(cards.strict))
    mine = USER_PIN.encode()
    for bad, rv in ((b"1234", C.CKR_PIN_LEN_RANGE), (b"p@ssw0rd", C.CKR_PIN_INVALID)):
        assert raw.C_SetPIN(strict, mine, len(mine), bad, len(bad)) == rv


@pytest.mark.parametrize("so", [False, True], ids=["user", "so"])
@pytest.mark.parametrize("policy", ["strict", "compatible"])
def test_pin_followed_by_nul_bytes_is_incorrect(cards: Cards, policy: str, so: bool) -> None:
    serial = cards.compat if policy == "compatible" else cards.strict
    pin = {("strict", False): USER_PIN, ("strict", True): SO_PIN}.get((policy, so))
    pin = pin or (COMPAT_SO_PIN if so else COMPAT_PIN)
    user_type = C.CKU_SO if so else C.CKU_USER
    raw = cards.raw
    h = raw.open(cards.slot(serial))
    for padded in (pin.encode() + b"\x00", pin.encode().ljust(64, b"\x00")):
        assert _login_rv(raw, h, padded, user_type) == C.CKR_PIN_INCORRECT, padded
    flags = cards.token(serial).flags
    low = C.CKF_SO_PIN_COUNT_LOW if so else C.CKF_USER_PIN_COUNT_LOW
    # A strict card knows such a PIN cannot be its own: refused unchecked, no try spent. On a compatible card
    # NUL is a PIN byte like any other, so the try is checked and counted.
    assert bool(flags & low) == (policy == "compatible")
    assert _login_rv(raw, h, pin.encode(), user_type) == C.CKR_OK
    assert not cards.token(serial).flags & low


def test_compatible_no_waiting_period_but_blocked_at_the_tenth(cards: Cards) -> None:
    raw = cards.raw
    serial = cards.new_card("Compat block", "compatible")
    slot = cards.slot(serial)
    h = raw.open(slot)
    results = [raw.login(h, "9999") for _ in range(10)]
    assert results == [C.CKR_PIN_INCORRECT] * 9 + [C.CKR_PIN_LOCKED]
    assert raw.login(h, COMPAT_PIN) == C.CKR_PIN_LOCKED
    assert cards.token(serial).flags & C.CKF_USER_PIN_LOCKED
    assert raw.login(h, COMPAT_SO_PIN, C.CKU_SO) == C.CKR_OK
    assert raw.C_InitPIN(h, b"1111", 4) == C.CKR_OK
    raw.C_CloseAllSessions(slot)


def test_strict_waits_after_three_wrong_pins(cards: Cards) -> None:
    raw = cards.raw
    serial = cards.new_card("Strict wait", "strict")
    slot = cards.slot(serial)
    h = raw.open(slot)
    assert [raw.login(h, "135792") for _ in range(3)] == [C.CKR_PIN_INCORRECT] * 3
    assert raw.login(h, USER_PIN) == C.CKR_FUNCTION_FAILED  # inside the waiting period, even the right PIN
    raw.C_CloseAllSessions(slot)


# --- keys --------------------------------------------------------------------------------------


def test_rsa_1024_on_compatible_only(cards: Cards) -> None:
    with cards.token(cards.compat).open(rw=True, user_pin=COMPAT_PIN) as s:
        pub, priv = s.generate_keypair(KeyType.RSA, 1024, label="rsa1024")
        signature = priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
        public_key_of(pub).verify(signature, b"data", padding.PKCS1v15(), hashes.SHA256())
        imported = rsa.generate_private_key(65537, 1024)
        s.create_object(_rsa_private_template(imported, "imported1024"))
    with cards.token(cards.strict).open(rw=True, user_pin=USER_PIN) as s:
        with pytest.raises(pkcs11.exceptions.KeySizeRange):
            s.generate_keypair(KeyType.RSA, 1024)
        with pytest.raises(pkcs11.exceptions.AttributeValueInvalid):
            s.create_object(_rsa_private_template(rsa.generate_private_key(65537, 1024), "refused"))


def _rsa_private_template(key: rsa.RSAPrivateKey, label: str) -> dict[Attribute, object]:
    n = key.private_numbers()

    def big(v: int) -> bytes:
        return v.to_bytes((v.bit_length() + 7) // 8, "big")

    return {
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TOKEN: False,
        Attribute.LABEL: label,
        Attribute.MODULUS: big(n.public_numbers.n),
        Attribute.PUBLIC_EXPONENT: big(n.public_numbers.e),
        Attribute.PRIVATE_EXPONENT: big(n.d),
        Attribute.PRIME_1: big(n.p),
        Attribute.PRIME_2: big(n.q),
        Attribute.SIGN: True,
    }


@pytest.mark.parametrize("oid", [P192, SECP256K1, BRAINPOOL_P384])
def test_more_curves_on_compatible_only(cards: Cards, oid: str) -> None:
    with cards.token(cards.compat).open(rw=True, user_pin=COMPAT_PIN) as s:
        pub, priv = s.generate_keypair(KeyType.EC, public_template={Attribute.EC_PARAMS: _curve(oid)})
        signature = priv.sign(b"data", mechanism=Mechanism.ECDSA_SHA256)
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
        public = public_key_of(pub)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(der, b"data", ec.ECDSA(hashes.SHA256()))
    raw = cards.raw
    h = raw.open(cards.slot(cards.strict))
    assert raw.login(h, USER_PIN) == C.CKR_OK
    assert _generate_ec(raw, h, oid) == C.CKR_CURVE_NOT_SUPPORTED
    other = {P192: ec.SECP192R1(), SECP256K1: ec.SECP256K1(), BRAINPOOL_P384: ec.BrainpoolP384R1()}[oid]
    point = ec.generate_private_key(other).public_key()
    raw_point = point.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    public = [
        (C.CKA_CLASS, ulong(C.CKO_PUBLIC_KEY)),
        (C.CKA_KEY_TYPE, ulong(C.CKK_EC)),
        (C.CKA_EC_PARAMS, _curve(oid)),
        (C.CKA_EC_POINT, bytes(asn1_core.OctetString(raw_point).dump())),
    ]
    assert _create_object(raw, h, public)[0] == C.CKR_CURVE_NOT_SUPPORTED
    compat = raw.open(cards.slot(cards.compat))
    rv, handle = _create_object(raw, compat, public)
    assert rv == C.CKR_OK and handle


def _generate_ec(raw: RawModule, h: int, oid: str) -> int:
    mech = CK_MECHANISM(C.CKM_EC_KEY_PAIR_GEN, None, 0)
    pub, keep_pub = make_template([(C.CKA_EC_PARAMS, _curve(oid))])
    priv, keep_priv = make_template([(C.CKA_SIGN, b"\x01")])
    pub_h, priv_h = ctypes.c_ulong(), ctypes.c_ulong()
    rv = raw.C_GenerateKeyPair(h, ctypes.byref(mech), pub, 1, priv, 1, ctypes.byref(pub_h), ctypes.byref(priv_h))
    del keep_pub, keep_priv
    return int(rv)


def _create_object(raw: RawModule, h: int, pairs: list[tuple[int, bytes]]) -> tuple[int, int]:
    attrs, keep = make_template(pairs)
    handle = ctypes.c_ulong()
    rv = int(raw.C_CreateObject(h, attrs, len(pairs), ctypes.byref(handle)))
    del keep
    return rv, handle.value


def test_mechanism_info_follows_the_policy(cards: Cards) -> None:
    compat, strict = cards.token(cards.compat).slot, cards.token(cards.strict).slot
    for mech in (Mechanism.RSA_PKCS_KEY_PAIR_GEN, Mechanism.SHA256_RSA_PKCS, Mechanism.RSA_PKCS_OAEP):
        assert compat.get_mechanism_info(mech).min_key_length == 1024
        assert strict.get_mechanism_info(mech).min_key_length == 2048
    for mech in (Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA, Mechanism.ECDH1_DERIVE):
        assert compat.get_mechanism_info(mech).min_key_length == 192
        assert strict.get_mechanism_info(mech).min_key_length == 256
        assert compat.get_mechanism_info(mech).max_key_length == 521
    assert compat.get_mechanism_info(Mechanism.AES_KEY_GEN).min_key_length == 16
    edwards = compat.get_mechanism_info(Mechanism.EC_EDWARDS_KEY_PAIR_GEN)  # Ed25519 and Ed448 on every card
    assert edwards.max_key_length == strict.get_mechanism_info(Mechanism.EC_EDWARDS_KEY_PAIR_GEN).max_key_length


# --- keys usable without login -------------------------------------------------------------------


def test_public_private_key_signs_without_login_on_compatible(cards: Cards) -> None:
    with cards.token(cards.compat).open(rw=True, user_pin=COMPAT_PIN) as s:
        s.generate_keypair(
            KeyType.EC,
            public_template={Attribute.EC_PARAMS: _curve("1.2.840.10045.3.1.7")},
            private_template={Attribute.PRIVATE: False},
            label="open key",
            store=True,
        )
        secret = s.generate_key(
            KeyType.AES, 256, label="open aes", store=True, template={Attribute.PRIVATE: False, Attribute.DERIVE: True}
        )
        assert secret[Attribute.PRIVATE] is False
    reinitialize(cards.lib)  # a fresh engine: the keys come from the store, sealed
    with cards.token(cards.compat).open() as s:  # no login
        priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label="open key")
        pub = s.get_key(object_class=ObjectClass.PUBLIC_KEY, label="open key")
        assert priv[Attribute.PRIVATE] is False
        signature = priv.sign(b"data", mechanism=Mechanism.ECDSA_SHA256)
        assert pub.verify(b"data", signature, mechanism=Mechanism.ECDSA_SHA256)
        aes = s.get_key(object_class=ObjectClass.SECRET_KEY, label="open aes")
        iv = b"\x01" * 16
        ciphertext = aes.encrypt(b"sixteen byte msg", mechanism_param=iv)
        assert aes.decrypt(ciphertext, mechanism_param=iv) == b"sixteen byte msg"
        # A key derived from it without login is a public session object too (as C_DeriveKey allows there).
        derived = aes.derive_key(
            KeyType.AES,
            128,
            mechanism=Mechanism.AES_ECB_ENCRYPT_DATA,
            mechanism_param=b"0" * 16,
            template={Attribute.PRIVATE: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
        assert derived[Attribute.PRIVATE] is False and len(derived[Attribute.VALUE]) == 16


def test_strict_keys_stay_private_whatever_the_template_says(cards: Cards) -> None:
    with cards.token(cards.strict).open(rw=True, user_pin=USER_PIN) as s:
        _pub, priv = s.generate_keypair(
            KeyType.EC,
            public_template={Attribute.EC_PARAMS: _curve("1.2.840.10045.3.1.7")},
            private_template={Attribute.PRIVATE: False},
            label="strict key",
            store=True,
        )
        assert priv[Attribute.PRIVATE] is True
        secret = s.generate_key(KeyType.AES, 256, label="strict aes", store=True, template={Attribute.PRIVATE: False})
        assert secret[Attribute.PRIVATE] is True
    with cards.token(cards.strict).open() as s:
        assert list(s.get_objects({Attribute.LABEL: "strict key", Attribute.CLASS: ObjectClass.PRIVATE_KEY})) == []
        assert list(s.get_objects({Attribute.LABEL: "strict aes"})) == []
    # A public session cannot make a private key either: CKA_PRIVATE false is overruled and the login demanded.
    raw = cards.raw
    h = raw.open(cards.slot(cards.strict), rw=False)
    assert _generate_aes(raw, h, token=False) == C.CKR_USER_NOT_LOGGED_IN


def _generate_aes(raw: RawModule, h: int, token: bool) -> int:
    mech = CK_MECHANISM(C.CKM_AES_KEY_GEN, None, 0)
    false, true = b"\x00", b"\x01"
    attrs, keep = make_template(
        [
            (C.CKA_CLASS, ulong(C.CKO_SECRET_KEY)),
            (C.CKA_KEY_TYPE, ulong(C.CKK_AES)),
            (C.CKA_VALUE_LEN, ulong(32)),
            (C.CKA_TOKEN, true if token else false),
            (C.CKA_PRIVATE, false),
            (C.CKA_ENCRYPT, true),
        ]
    )
    handle = ctypes.c_ulong()
    rv = int(raw.C_GenerateKey(h, ctypes.byref(mech), attrs, 6, ctypes.byref(handle)))
    del keep
    return rv


def test_session_objects_in_read_only_public_sessions(cards: Cards) -> None:
    raw = cards.raw
    ro = raw.open(cards.slot(cards.compat), rw=False)
    assert raw.session_info(ro).state == C.CKS_RO_PUBLIC_SESSION
    assert _generate_aes(raw, ro, token=False) == C.CKR_OK
    assert _generate_aes(raw, ro, token=True) == C.CKR_SESSION_READ_ONLY  # token objects need R/W
    rw = raw.open(cards.slot(cards.compat), rw=True)
    assert raw.session_info(rw).state == C.CKS_RW_PUBLIC_SESSION
    assert _generate_aes(raw, rw, token=True) == C.CKR_OK  # a public token object from a public R/W session
    with cards.token(cards.compat).open() as s:
        key = next(iter(s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: False})))
        assert isinstance(key, pkcs11.SecretKey)


def test_logout_without_login_is_ok_on_compatible_only(cards: Cards) -> None:
    raw = cards.raw
    compat, strict = raw.open(cards.slot(cards.compat)), raw.open(cards.slot(cards.strict))
    assert raw.C_Logout(compat) == C.CKR_OK  # as SoftHSM answers
    assert raw.C_Logout(strict) == C.CKR_USER_NOT_LOGGED_IN  # as the standard lists
    raw.C_CloseSession(compat)
    raw.C_CloseSession(strict)


_LOGIN_SCRIPT = """
import sys, pkcs11
lib = pkcs11.lib(sys.argv[1])
token = lib.get_token(token_label=sys.argv[2])
for pin in (sys.argv[3] + "\\0", sys.argv[3].ljust(64, "\\0"), sys.argv[3]):
    try:
        token.open(user_pin=pin).close()
        print("OK")
    except pkcs11.PKCS11Error as exc:
        print(type(exc).__name__)
"""


def test_softhsm_answers_nul_padded_pins_the_same_way(cards: Cards, module_path: str, tmp_path: Path) -> None:
    """The reference: SoftHSM refuses a PIN followed by NUL bytes as a wrong PIN, and so does each card."""
    from tests.conftest import require_file, require_tool

    softhsm = require_file("/usr/lib/softhsm/libsofthsm2.so", "softhsm2")
    util = require_tool("softhsm2-util", "softhsm2")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf), "VSC_HOME": str(cards.home)}
    init = [util, "--init-token", "--free", "--label", "ref", "--pin", COMPAT_PIN, "--so-pin", COMPAT_SO_PIN]
    subprocess.run(init, env=env, check=True, capture_output=True, timeout=60)

    def logins(module: str, label: str, pin: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", _LOGIN_SCRIPT, module, label, pin],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    expected = ["PinIncorrect", "PinIncorrect", "OK"]
    assert logins(softhsm, "ref", COMPAT_PIN) == expected
    assert logins(module_path, "Compat card", COMPAT_PIN) == expected
    assert logins(module_path, "Strict card", USER_PIN) == expected
