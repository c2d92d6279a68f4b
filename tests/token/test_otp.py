"""OTP keys on the card: RFC 4226/6238 vectors, pyotp as an independent oracle, secrets sealed in the store,
HOTP counters advanced atomically across processes."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest

from tests.conftest import SO_PIN, USER_PIN
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import access, otp, otp_keys
from vsc_provider.token.engine import Engine

RFC_SECRET = b"12345678901234567890"
# RFC 6238 appendix B uses a seed per hash, of the hash's own length.
RFC_SEEDS = {"SHA1": RFC_SECRET, "SHA256": RFC_SECRET + b"123456789012", "SHA512": RFC_SECRET * 3 + b"1234"}
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


def test_rfc4226_vectors() -> None:
    assert [otp.hotp(RFC_SECRET, i) for i in range(10)] == RFC4226


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_vectors(at: int, sha1: str, sha256: str, sha512: str) -> None:
    for name, expected in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        spec = otp.OtpSpec("totp", name, 8, period=30)
        assert otp.totp(RFC_SEEDS[name], at, spec).code == expected


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
@pytest.mark.parametrize("digits", [6, 7, 8])
@pytest.mark.parametrize("period", [15, 30, 60, 97])
def test_pyotp_agrees(algorithm: str, digits: int, period: int) -> None:
    secret = os.urandom(20)
    b32 = base64.b32encode(secret).decode()
    digest = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}[algorithm]
    import hashlib

    oracle = pyotp.TOTP(b32, digits=digits, digest=getattr(hashlib, digest), interval=period)
    hotp_oracle = pyotp.HOTP(b32, digits=digits, digest=getattr(hashlib, digest))
    for at in (0, 1, period - 1, period, 1_700_000_000, 4_000_000_123):
        assert otp.totp(secret, at, otp.OtpSpec("totp", algorithm, digits, period)).code == oracle.at(at)
    for counter in (0, 1, 7, 2**32 + 5):
        assert otp.hotp(secret, counter, digits, algorithm) == hotp_oracle.at(counter)


def test_t0_shifts_the_time_steps() -> None:
    spec = otp.OtpSpec("totp", period=30, t0=1000)
    code = otp.totp(RFC_SECRET, 1000 + 59, spec)
    assert code == otp.Code(otp.hotp(RFC_SECRET, 1), 1, 1)
    with pytest.raises(CKRError):
        otp.totp(RFC_SECRET, 999, spec)


@pytest.mark.parametrize(
    "spec",
    [
        otp.OtpSpec("motp"),
        otp.OtpSpec("totp", "MD5"),
        otp.OtpSpec("totp", digits=5),
        otp.OtpSpec("totp", digits=9),
        otp.OtpSpec("totp", period=0),
        otp.OtpSpec("hotp", counter=-1),
    ],
)
def test_out_of_range_specs_are_refused(spec: otp.OtpSpec) -> None:
    with pytest.raises(CKRError) as err:
        spec.check()
    assert err.value.rv == C.CKR_ATTRIBUTE_VALUE_INVALID


@pytest.fixture
def engine(vsc_home: Path) -> Engine:
    eng = Engine()
    card = eng.create_card("OTP", SO_PIN.encode(), USER_PIN.encode())
    access.login(eng, card, USER_PIN.encode())
    return eng


def _card(engine: Engine):
    return next(iter(engine.cards.values()))


def test_keys_store_compute_and_stay_sealed(engine: Engine, vsc_home: Path) -> None:
    card = _card(engine)
    secret = os.urandom(20)
    hotp_key = otp_keys.add(engine, card, otp.OtpSpec("hotp", counter=5), secret, "Example", "alice@example.com")
    totp_key = otp_keys.add(engine, card, otp.OtpSpec("totp", "SHA512", 8, 60), secret, "", "bob")
    assert otp_keys.code(engine, card, hotp_key).code == otp.hotp(secret, 5)
    assert otp_keys.code(engine, card, hotp_key).code == otp.hotp(secret, 6)
    assert otp_keys.code(engine, card, totp_key, at=125) == otp.Code(otp.hotp(secret, 2, 8, "SHA512"), 2, 55)
    assert otp_keys.find(card, "Example:alice@example.com") is hotp_key
    assert otp_keys.find(card, "alice@example.com") is hotp_key
    assert otp_keys.find(card, "bob") is totp_key
    with pytest.raises(CKRError):
        otp_keys.add(engine, card, otp.OtpSpec("totp"), secret, "Example", "alice@example.com")
    # The store file holds neither the bytes nor their base32 or hex.
    raw = b"".join(p.read_bytes() for p in vsc_home.iterdir() if p.is_file())
    for form in (secret, base64.b32encode(secret), base64.b32encode(secret).rstrip(b"="), secret.hex().encode()):
        assert form not in raw

    # Another process (a fresh engine) sees the advanced counter; without the PIN it cannot compute.
    other = Engine()
    card2 = _card(other)
    key2 = otp_keys.find(card2, "alice@example.com")
    assert otp.spec_of(key2.attrs).counter == 7
    assert otp_keys.describe(key2)["counter"] == 7
    with pytest.raises(CKRError) as err:
        otp_keys.code(other, card2, key2)
    assert err.value.rv == C.CKR_USER_NOT_LOGGED_IN
    with pytest.raises(CKRError) as err:
        access.login(other, card2, b"000000")
    assert err.value.rv == C.CKR_PIN_INCORRECT
    access.login(other, card2, USER_PIN.encode())
    assert otp_keys.code(other, card2, key2).code == otp.hotp(secret, 7)


def test_store_copied_to_another_device_does_not_open(engine: Engine, vsc_home: Path, tmp_path: Path) -> None:
    card = _card(engine)
    key = otp_keys.add(engine, card, otp.OtpSpec("totp"), os.urandom(20), "X", "y")
    copy = tmp_path / "copy"
    copy.mkdir()
    with sqlite3.connect(vsc_home / "store.sqlite") as src, sqlite3.connect(copy / "store.sqlite") as dst:
        src.backup(dst)  # the committed state, WAL included
    (copy / "device.key").write_bytes(os.urandom(len((vsc_home / "device.key").read_bytes())))
    thief = Engine(copy / "store.sqlite", copy / "device.key")
    stolen = _card(thief)
    with pytest.raises(CKRError):
        access.login(thief, stolen, USER_PIN.encode())
    assert otp_keys.find(stolen, "X:y").handle == key.handle
    with pytest.raises(CKRError):
        otp_keys.code(thief, stolen, otp_keys.find(stolen, "X:y"))


def test_two_processes_never_get_the_same_hotp_code(engine: Engine) -> None:
    card = _card(engine)
    secret = os.urandom(20)
    otp_keys.add(engine, card, otp.OtpSpec("hotp", digits=8), secret, "Race", "r")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    script = str(Path(__file__).with_name("otp_worker.py"))
    procs = [
        subprocess.Popen(
            [sys.executable, script, "Race:r", "1.5", USER_PIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append([json.loads(line) for line in out.splitlines()])
    both = results[0] + results[1]
    counters = sorted(r["counter"] for r in both)
    assert counters == list(range(len(both)))
    for r in both:
        assert r["code"] == otp.hotp(secret, r["counter"], 8)
    # Both took codes in the same 1.5 s (how they interleave is up to the scheduler: on a loaded machine one
    # may wait on the store's write lock for a while, which is the point, not a failure)
    assert results[0] and results[1]
    engine.refresh(force=True)
    assert otp.spec_of(otp_keys.find(_card(engine), "r").attrs).counter == len(both)


def test_a_name_another_process_stored_during_the_write_refuses_them_all(engine: Engine) -> None:
    """The names are checked again inside the store transaction, against what is committed: here another
    process's key, stored after this engine last looked (its own check then passed)."""
    card = _card(engine)
    other = Engine()
    access.login(other, _card(other), USER_PIN.encode())
    otp_keys.add(other, _card(other), otp.OtpSpec("totp"), os.urandom(20), "Shop", "dave")
    items = [
        (otp.key_attrs(otp.OtpSpec("totp"), issuer, account, f"{issuer}:{account}", os.urandom(8)), os.urandom(20))
        for issuer, account in (("Bank", "carol"), ("Shop", "dave"))
    ]
    with pytest.raises(CKRError) as err:  # no poll: this engine has not seen the other's key
        engine.add_objects(card, items, True, 0, check=otp_keys.still_free_check(["Bank:carol", "Shop:dave"]))
    assert "already has an OTP account 'Shop:dave'" in str(err.value)
    engine.refresh(force=True)
    assert [otp_keys.display_name(o) for o in otp_keys.keys(_card(engine))] == ["Shop:dave"]
