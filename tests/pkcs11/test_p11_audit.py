"""The audit log through the real module and the `vsc` command: every key use and PIN event becomes a chained
entry without data or PINs, `vsc audit verify` names the first entry that was changed, removed or reordered,
two processes signing at once keep one linear chain, and a killed process loses at most the documented bound."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from p11_support import CK_MECHANISM, SO_PIN, USER_PIN, CardEnv, RawModule, make_card, reinitialize, vsc
from pkcs11 import KDF, Attribute, KeyType, Mechanism, ObjectClass

from vsc_provider.ck import constants as C
from vsc_provider.token import audit, audit_journal, audit_store

P256 = bytes.fromhex("06082a8648ce3d030107")
DATA = b"audit-test-data-5c1e9b"  # what is signed, decrypted, derived: must appear nowhere in the store
NEW_PIN = "730461"
TOTP_LINK = "otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP&issuer=Example"

FIND_IN_STORE = """
import pathlib, sys
home = pathlib.Path(sys.argv[1])
stored = b"".join(p.read_bytes() for p in home.rglob("store.sqlite*") if p.is_file())  # with the audit journals
for wanted in sys.argv[2:]:
    print("found" if bytes.fromhex(wanted) in stored else "absent")
"""

SIGNER = """
import sys, time
import pkcs11
from pkcs11 import Mechanism, ObjectClass
lib = pkcs11.lib(sys.argv[1])
with lib.get_token(token_serial=sys.argv[2].encode()).open(user_pin=sys.argv[3]) as s:
    key = s.get_key(ObjectClass.PRIVATE_KEY, label=sys.argv[4])
    for _ in range(int(sys.argv[5])):
        key.sign(b"data", mechanism=Mechanism.ECDSA_SHA256)
    print("signed", flush=True)
    if sys.argv[6] == "wait":
        time.sleep(120)
"""


def _log(home: Path, card: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(vsc(home, "audit", "list", "--card", card, "--json").stdout)
    return result


def _signer(
    home: Path, module_path: str, serial: str, label: str, count: int, wait: bool = False
) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", SIGNER, module_path, serial, USER_PIN, label, str(count), "wait" if wait else "exit"]
    env = {"VSC_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)


def _card_with_key(home: Path, label: str) -> str:
    serial = make_card(home, label)
    vsc(home, "key", "generate", "--card", serial, "--type", "p256", "--label", "k", "--pin", USER_PIN)
    return serial


@pytest.fixture(scope="module")
def home(card_env: CardEnv) -> Path:
    return card_env.home


def test_key_uses_and_pin_events_are_recorded_without_data_or_pins(
    card_env: CardEnv, home: Path, module_path: str
) -> None:
    serial = make_card(home, "Audit card")
    token = card_env.token(serial)
    with pytest.raises(pkcs11.PinIncorrect):
        token.open(user_pin="000000")
    with token.open(rw=True, user_pin=USER_PIN) as s:
        _, ec_key = s.generate_keypair(
            KeyType.EC, store=True, label="ec", id=b"\x0e\xc1", public_template={Attribute.EC_PARAMS: P256}
        )
        rsa_pub, rsa_key = s.generate_keypair(
            KeyType.RSA, 2048, store=True, label="rsa", id=b"\x75\xa0", private_template={Attribute.SIGN_RECOVER: True}
        )
        only_wraps = {Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.WRAP: True, Attribute.UNWRAP: True}
        wrapper = s.generate_key(KeyType.AES, 256, store=True, label="wrapper", id=b"\xa3\x50", template=only_wraps)
        assert ec_key.sign(DATA, mechanism=Mechanism.ECDSA_SHA256)
        assert (
            rsa_key.decrypt(rsa_pub.encrypt(DATA, mechanism=Mechanism.RSA_PKCS), mechanism=Mechanism.RSA_PKCS) == DATA
        )
        peer = ec.generate_private_key(ec.SECP256R1()).public_key()
        point = peer.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        ec_key.derive_key(KeyType.GENERIC_SECRET, 256, mechanism_param=(KDF.NULL, None, point))
        target = s.generate_key(KeyType.AES, 128, template={Attribute.EXTRACTABLE: True})
        wrapped = wrapper.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP)
        wrapper.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.AES_KEY_WRAP)
        # C_SignRecover through the C function list (python-pkcs11 has no call for it), in the same login.
        raw = RawModule(module_path)
        h = raw.open(int(token.slot.slot_id))
        assert raw.C_SignRecoverInit(h, ctypes.byref(CK_MECHANISM(C.CKM_RSA_PKCS, None, 0)), rsa_key.handle) == 0
        n = ctypes.c_ulong(512)
        out = (ctypes.c_ubyte * 512)()
        assert raw.C_SignRecover(h, DATA, len(DATA), out, ctypes.byref(n)) == 0
        raw.C_CloseSession(h)
    vsc(home, "otp", "add", "--card", serial, TOTP_LINK, "--pin", USER_PIN)
    vsc(home, "otp", "code", "Example:alice", "--card", serial, "--pin", USER_PIN)
    vsc(home, "pin", "change", "--card", serial, "--old", USER_PIN, "--new", NEW_PIN)
    reinitialize(card_env.lib)  # C_Finalize writes what the module still holds

    log = _log(home, serial)
    entries = log["entries"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    kinds = [(e["kind"], e["key_id"], e["mechanism"], e["result"]) for e in entries]
    assert ("login-user", "", "", "CKR_PIN_INCORRECT") in kinds
    assert ("login-user", "", "", "CKR_OK") in kinds
    assert ("sign", "0ec1", "CKM_ECDSA_SHA256", "CKR_OK") in kinds
    assert ("decrypt", "75a0", "CKM_RSA_PKCS", "CKR_OK") in kinds
    assert ("sign", "75a0", "CKM_RSA_PKCS", "CKR_OK") in kinds  # C_SignRecover
    assert ("derive", "0ec1", "CKM_ECDH1_DERIVE", "CKR_OK") in kinds
    assert ("unwrap", "a350", "CKM_AES_KEY_WRAP", "CKR_OK") in kinds
    assert kinds.count(("wrap", "a350", "CKM_AES_KEY_WRAP", "CKR_OK")) == 1  # the length query is not a use
    assert any(k[0] == "otp-code" and k[2] == "CKM_VSC_TOTP" and k[3] == "CKR_OK" for k in kinds)
    assert ("pin-change-user", "", "", "CKR_OK") in kinds
    signed = next(e for e in entries if e["kind"] == "sign")
    assert signed["key_label"] == "ec" and signed["origin"].startswith("pkcs11/")
    assert next(e for e in entries if e["kind"] == "otp-code")["origin"].startswith("cli/")  # `vsc otp code`
    assert log["signed_head"]["seq"] == len(entries)
    assert "verified" in vsc(home, "audit", "verify", "--card", serial).stdout

    # No PIN, data or digest of data anywhere in the store (the WAL included) nor in the listing.
    # Read by another process: closing a file descriptor of the store here would drop this process's SQLite
    # locks on it (POSIX), and the module loaded here holds the store open.
    secrets = [USER_PIN.encode(), NEW_PIN.encode(), SO_PIN.encode(), DATA, hashlib.sha256(DATA).digest()]
    found = subprocess.run(
        [sys.executable, "-c", FIND_IN_STORE, str(home), *(x.hex() for x in secrets)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert found.stdout.split() == ["absent"] * len(secrets)
    listing = json.dumps(log).encode()
    for secret in secrets:
        assert secret not in listing
    assert hashlib.sha256(DATA).hexdigest().encode() not in listing


def test_block_and_unblock_are_recorded(card_env: CardEnv, home: Path) -> None:
    out = vsc(
        home,
        "card",
        "create",
        "--label",
        "Audit block",
        "--pin",
        "4821",
        "--so-pin",
        SO_PIN,
        "--policy",
        "compatible",
        "--json",
    )
    serial = json.loads(out.stdout)["serial"]
    token = card_env.token(serial)
    with pytest.raises(pkcs11.PinLocked):
        for _ in range(10):
            try:
                token.open(user_pin="9999")
            except pkcs11.PinIncorrect:
                continue
    vsc(home, "pin", "reset", "--card", serial, "--so-pin", SO_PIN, "--new", "4822")
    entries = _log(home, serial)["entries"]
    kinds = [(e["kind"], e["result"]) for e in entries]
    assert kinds.count(("login-user", "CKR_PIN_INCORRECT")) == 9
    assert ("login-user", "CKR_PIN_LOCKED") in kinds
    assert kinds.index(("block-user", "CKR_OK")) == kinds.index(("login-user", "CKR_PIN_LOCKED")) + 1
    # the reset unblocks; the SO's login for it ends with the command
    assert kinds[-3:] == [("login-so", "CKR_OK"), ("pin-reset-user", "CKR_OK"), ("logout-so", "CKR_OK")]
    assert "verified" in vsc(home, "audit", "verify", "--card", serial).stdout


def test_logouts_are_recorded_with_their_role_and_front_end(card_env: CardEnv, home: Path) -> None:
    serial = make_card(home, "Audit logout")
    token = card_env.token(serial)
    # python-pkcs11 closes a session it logged in with C_Logout, then C_CloseSession. Another session stays
    # open meanwhile, so that the entry is C_Logout's and not the last session's closing.
    other = token.open()
    with token.open(user_pin=USER_PIN):
        pass
    other.close()  # nobody logged in any more: no entry
    with token.open(rw=True, so_pin=SO_PIN):
        pass
    entries = [e for e in _log(home, serial)["entries"] if e["origin"].startswith("pkcs11/")]
    assert [(e["kind"], e["result"]) for e in entries] == [
        ("login-user", "CKR_OK"),
        ("logout-user", "CKR_OK"),
        ("login-so", "CKR_OK"),
        ("logout-so", "CKR_OK"),
    ]
    assert "verified" in vsc(home, "audit", "verify", "--card", serial).stdout


# --- tampering -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_store(home: Path, module_path: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store whose card has 14 entries: the CLI's login and logout (1, 2), the module's login (3), 10
    signatures and the module's logout (14)."""
    own = tmp_path_factory.mktemp("audit-tamper")
    serial = _card_with_key(own, "Tamper card")
    signer = _signer(own, module_path, serial, "k", 10)
    assert signer.wait(timeout=60) == 0
    kinds = [e["kind"] for e in _log(own, serial)["entries"]]
    assert kinds == ["login-user", "logout-user", "login-user", *["sign"] * 10, "logout-user"]
    return own, serial


Edit = Callable[[list[audit.Entry]], list[audit.Entry]]


def _rewrite(store: Path, edit: Edit) -> None:
    """What a forger with sqlite3 and without the device key can do: decode the card's stored blocks of entries,
    change the entries, and store them back as one block (however the writers had split them)."""
    db = sqlite3.connect(store, isolation_level=None)
    db.execute("BEGIN")
    rows = db.execute("SELECT card_id, block FROM audit ORDER BY card_id, first_seq").fetchall()
    by_card: dict[int, list[audit.Entry]] = {}
    for card_id, block in rows:
        by_card.setdefault(card_id, []).extend(audit_store.unpack_block(block))
    for card_id, chain in by_card.items():
        entries = edit(chain)
        db.execute("DELETE FROM audit WHERE card_id = ?", (card_id,))
        if entries:
            db.execute(
                "INSERT INTO audit(card_id, first_seq, last_seq, block) VALUES (?, ?, ?, ?)",
                (card_id, entries[0].seq, entries[-1].seq, audit_store.block_of(entries)),
            )
    db.execute("COMMIT")
    db.close()


def _swapped(entries: list[audit.Entry], a: int, b: int) -> list[audit.Entry]:
    """Entries a and b trade places: each takes the other's number, its own fields and hashes stay."""
    renumbered = [e._replace(seq={a: b, b: a}.get(e.seq, e.seq)) for e in entries]
    return sorted(renumbered, key=lambda e: e.seq)


def _rehashed_after_change(entries: list[audit.Entry], seq: int) -> list[audit.Entry]:
    """Entry `seq` changed, then every hash from it on recomputed (its own prev kept)."""
    out: list[audit.Entry] = []
    prev = b""
    for e in entries:
        if e.seq == seq:
            e = e._replace(key_label="other")
        if e.seq >= seq:
            e = e._replace(prev=prev or e.prev)
            e = e._replace(hash=audit.entry_hash(e))
            prev = e.hash
        out.append(e)
    return out


TAMPERING: dict[str, tuple[Edit, int, str]] = {
    "changed field": (
        lambda es: [e._replace(result="CKR_GENERAL_ERROR") if e.seq == 5 else e for e in es],
        5,
        "was changed",
    ),
    "deleted middle": (lambda es: [e for e in es if e.seq != 6], 6, "is missing"),
    "swapped": (lambda es: _swapped(es, 4, 5), 4, "does not follow"),
    "truncated tail": (lambda es: [e for e in es if e.seq <= 9], 10, "is missing"),
    "rehashed after a change": (lambda es: _rehashed_after_change(es, 7), 14, "signed head"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_verify_names_the_first_bad_entry(signed_store: tuple[Path, str], tmp_path: Path, case: str) -> None:
    source, serial = signed_store
    copy = tmp_path / "home"
    shutil.copytree(source, copy)
    edit, bad, words = TAMPERING[case]
    _rewrite(copy / "store.sqlite", edit)
    result = vsc(copy, "audit", "verify", "--card", serial, check=False)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert f"broken at entry {bad}:" in message and words in message and "\n" not in message
    # The untouched store still verifies.
    assert vsc(source, "audit", "verify", "--card", serial).returncode == 0


def test_a_writer_does_not_sign_over_a_cut_chain(
    signed_store: tuple[Path, str], tmp_path: Path, module_path: str
) -> None:
    source, serial = signed_store
    copy = tmp_path / "home"
    shutil.copytree(source, copy)
    _rewrite(copy / "store.sqlite", lambda es: [e for e in es if e.seq <= 9])
    assert _signer(copy, module_path, serial, "k", 3).wait(timeout=60) == 0
    result = vsc(copy, "audit", "verify", "--card", serial, check=False)
    assert result.returncode == 1 and "broken at entry 10:" in result.stderr


# --- several processes, and a killed one ----------------------------------------------------------------


def test_two_processes_signing_at_once_keep_one_linear_chain(home: Path, module_path: str) -> None:
    serial = _card_with_key(home, "Audit shared")
    count = 2 * audit_journal.CAPACITY + 17
    signers = [_signer(home, module_path, serial, "k", count) for _ in range(2)]
    for p in signers:
        assert p.wait(timeout=120) == 0
    entries = _log(home, serial)["entries"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    by_origin: dict[str, int] = {}
    for e in entries:
        if e["kind"] == "sign":
            by_origin[e["origin"]] = by_origin.get(e["origin"], 0) + 1
    assert sorted(by_origin.values()) == [count, count]
    assert "verified" in vsc(home, "audit", "verify", "--card", serial).stdout


def test_sigkill_loses_no_entry_and_the_next_process_folds_the_journal(home: Path, module_path: str) -> None:
    serial = _card_with_key(home, "Audit killed")
    count = audit_journal.CAPACITY + 40  # one journal folded by the signer, the rest left in the next one
    signer = _signer(home, module_path, serial, "k", count, wait=True)
    assert signer.stdout is not None and signer.stdout.readline().strip() == "signed"
    os.kill(signer.pid, signal.SIGKILL)
    signer.wait(timeout=30)
    journals = home / "store.sqlite-audit"
    left = [p.name for p in journals.iterdir()]
    assert any(name.startswith(f"{signer.pid}-") for name in left), left
    signs = [e for e in _log(home, serial)["entries"] if e["kind"] == "sign"]
    assert len(signs) == count
    assert "verified" in vsc(home, "audit", "verify", "--card", serial).stdout
    # `vsc audit list` folded the killed signer's journal, then deleted it: its process has ended.
    assert not any(p.name.startswith(f"{signer.pid}-") for p in journals.iterdir())
