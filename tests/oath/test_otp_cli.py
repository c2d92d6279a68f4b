"""`vsc otp` end to end through the real command: RFC vectors, Google Authenticator exports (built here with
protobuf) and QR images (made here with qrcode), list/code/delete, wrong PIN, bad links, concurrent HOTP
codes from several processes, secrets absent from the store files."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
import qrcode

from tests.conftest import USER_PIN, run_vsc
from tests.oath.test_accounts import Payload, migration_link
from vsc_provider.token import otp

RFC_SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238 = {59: ("94287082", "46119246", "90693936"), 1234567890: ("89005924", "91819424", "93441116")}
RFC4226 = ["755224", "287082", "359152", "969429", "338314"]


def b32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def vsc_json(*args: str) -> object:
    return json.loads(run_vsc(*args, "--json").stdout)


def test_rfc_vectors_through_the_cli(card: str) -> None:
    for name, seed in RFC_SEEDS.items():
        link = f"otpauth://totp/RFC6238:{name}?secret={b32(seed)}&algorithm={name}&digits=8&issuer=RFC6238"
        run_vsc("otp", "add", "--card", "Test card", link, "--pin", USER_PIN)
    run_vsc(
        "otp",
        "add",
        "--card",
        "Test card",
        f"otpauth://hotp/RFC4226?secret={b32(RFC_SEEDS['SHA1'])}&counter=0",
        "--pin",
        USER_PIN,
    )
    for at, codes in RFC6238.items():
        for name, expected in zip(RFC_SEEDS, codes, strict=True):
            got = vsc_json("otp", "code", "--card", "Test card", f"RFC6238:{name}", "--pin", USER_PIN, "--at", str(at))
            assert got == {"code": expected, "valid_for": 30 - at % 30}
    for i, expected in enumerate(RFC4226):
        got = vsc_json("otp", "code", "--card", "Test card", "RFC4226", "--pin", USER_PIN)
        assert got == {"code": expected, "valid_for": None}  # exactly the two keys, for HOTP too
        assert vsc_json("otp", "list", "--card", "Test card")[3]["counter"] == i + 1
    listed = vsc_json("otp", "list", "--card", "Test card")
    assert [item["name"] for item in listed] == ["RFC6238:SHA1", "RFC6238:SHA256", "RFC6238:SHA512", "RFC4226"]
    assert listed[3]["counter"] == len(RFC4226)
    assert all("secret" not in item for item in listed)
    # A human-readable code: the digits and the seconds left.
    out = run_vsc("otp", "code", "--card", "Test card", "RFC6238:SHA1", "--pin", USER_PIN, "--at", "59").stdout
    assert out.split()[0] == "94287082" and "1 s" in out


def test_google_authenticator_export_in_two_batches_and_by_qr(card: str, tmp_path: Path, vsc_home: Path) -> None:
    kinds = [(Payload.OTP_TYPE_TOTP, "totp"), (Payload.OTP_TYPE_HOTP, "hotp")]
    algorithms = [
        (Payload.ALGORITHM_SHA1, "sha1"),
        (Payload.ALGORITHM_SHA256, "sha256"),
        (Payload.ALGORITHM_SHA512, "sha512"),
    ]
    digit_counts = [(Payload.DIGIT_COUNT_SIX, 6), (Payload.DIGIT_COUNT_EIGHT, 8)]
    accounts = []
    for kind, kind_name in kinds:
        for alg, alg_name in algorithms:
            for digits, n in digit_counts:
                accounts.append(
                    {
                        "secret": os.urandom(20),
                        "name": f"{kind_name}-{alg_name}-{n}",
                        "issuer": "Google",
                        "algorithm": alg,
                        "digits": digits,
                        "type": kind,
                        "counter": 5 if kind_name == "hotp" else 0,
                    }
                )
    first = migration_link(accounts[:6], (0, 2, 1234))
    second = migration_link(accounts[6:], (1, 2, 1234))
    image = tmp_path / "second.png"
    qrcode.make(second).save(image)
    result = run_vsc("otp", "import", "--card", "Test card", first, "--pin", USER_PIN)
    assert "not yet imported: 2" in result.stderr
    result = run_vsc("otp", "import", "--card", "Test card", "--qr", str(image), "--pin", USER_PIN)
    assert result.stdout.count("added") == 6
    listed = {item["name"]: item for item in vsc_json("otp", "list", "--card", "Test card")}
    assert len(listed) == 12
    import hashlib

    for acc in accounts:
        alg_name = acc["name"].split("-")[1]
        digits = int(acc["name"].split("-")[2])
        key = b32(acc["secret"])
        got = vsc_json("otp", "code", "--card", "Test card", acc["name"], "--pin", USER_PIN, "--at", "1700000000")
        if acc["type"] == Payload.OTP_TYPE_TOTP:
            oracle = pyotp.TOTP(key, digits=digits, digest=getattr(hashlib, alg_name))
            assert got["code"] == oracle.at(1700000000)
        else:
            oracle_h = pyotp.HOTP(key, digits=digits, digest=getattr(hashlib, alg_name))
            assert got["code"] == oracle_h.at(5)
        assert listed[f"Google:{acc['name']}"]["digits"] == digits
    raw = b"".join(p.read_bytes() for p in vsc_home.iterdir() if p.is_file())
    for acc in accounts:
        assert acc["secret"] not in raw and b32(acc["secret"]).encode() not in raw


def test_add_by_qr_label_delete_and_wrong_pin(card: str, tmp_path: Path) -> None:
    secret = os.urandom(32)
    image = tmp_path / "otp.png"
    qrcode.make(f"otpauth://totp/Shop:dave?secret={b32(secret)}&issuer=Shop&period=45&algorithm=SHA256&digits=7").save(
        image
    )
    out = run_vsc("otp", "add", "--card", "Test card", "--qr", str(image), "--label", "My shop", "--pin", USER_PIN)
    assert "added Shop:dave" in out.stdout
    got = vsc_json("otp", "code", "--card", "Test card", "dave", "--pin", USER_PIN, "--at", "100")
    assert got == {"code": otp.totp(secret, 100, otp.OtpSpec("totp", "SHA256", 7, 45)).code, "valid_for": 35}
    assert vsc_json("otp", "code", "--card", "Test card", "My shop", "--pin", USER_PIN, "--at", "100") == got
    listed = vsc_json("otp", "list", "--card", "Test card")
    assert listed[0]["label"] == "My shop" and listed[0]["period"] == 45
    wrong = run_vsc("otp", "code", "--card", "Test card", "dave", "--pin", "000000", check=False)
    assert wrong.returncode != 0 and "wrong PIN" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    missing = run_vsc("otp", "code", "--card", "Test card", "nobody", "--pin", USER_PIN, check=False)
    assert missing.returncode != 0 and "no OTP account 'nobody'" in missing.stderr
    assert "deleted Shop:dave" in run_vsc("otp", "delete", "--card", "Test card", "Shop:dave", "--pin", USER_PIN).stdout
    assert vsc_json("otp", "list", "--card", "Test card") == []
    # A QR code of an export given to `add` is taken too.
    exported = tmp_path / "export.png"
    qrcode.make(migration_link([{"secret": secret, "name": "erin", "issuer": "Mail", "type": 2}])).save(exported)
    assert (
        "added Mail:erin"
        in run_vsc("otp", "add", "--card", "Test card", "--qr", str(exported), "--pin", USER_PIN).stdout
    )
    assert vsc_json("otp", "code", "--card", "Test card", "erin", "--pin", USER_PIN, "--at", "30")["code"] == otp.hotp(
        secret, 1
    )
    run_vsc("otp", "delete", "--card", "Test card", "erin", "--pin", USER_PIN)
    blank = tmp_path / "blank.png"
    qrcode.make("x").get_image().crop((0, 0, 10, 10)).save(blank)
    result = run_vsc("otp", "add", "--card", "Test card", "--qr", str(blank), "--pin", USER_PIN, check=False)
    assert result.returncode != 0 and "no QR code found" in result.stderr


@pytest.mark.parametrize(
    ("link", "field"),
    [
        ("otpauth://totp/x?secret=01!", "secret"),
        ("otpauth://totp/x?secret=JBSWY3DP&digits=10", "digits"),
        ("otpauth://hotp/x?secret=JBSWY3DP", "counter"),
        ("otpauth://totp/x?secret=JBSWY3DP&algorithm=SHA3", "algorithm"),
    ],
)
def test_bad_links_get_one_line(card: str, link: str, field: str) -> None:
    result = run_vsc("otp", "add", "--card", "Test card", link, "--pin", USER_PIN, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"otpauth URI: {field}:" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_hotp_codes_from_the_cli_are_all_different(card: str) -> None:
    secret = os.urandom(20)
    run_vsc(
        "otp", "add", "--card", "Test card", f"otpauth://hotp/race?secret={b32(secret)}&counter=0", "--pin", USER_PIN
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vsc_provider.cli",
                "otp",
                "code",
                "--card",
                "Test card",
                "race",
                "--pin",
                USER_PIN,
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(6)
    ]
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        answers.append(json.loads(out))
    assert all(set(a) == {"code", "valid_for"} and a["valid_for"] is None for a in answers)
    assert sorted(a["code"] for a in answers) == sorted(otp.hotp(secret, counter) for counter in range(6))
    assert vsc_json("otp", "list", "--card", "Test card")[0]["counter"] == 6


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a refused command: exactly one line, no traceback."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_an_account_name_two_issuers_share_must_be_named_in_full(card: str) -> None:
    secrets = {"A": os.urandom(20), "B": os.urandom(20)}
    for issuer, secret in secrets.items():
        link = f"otpauth://totp/{issuer}:alice?secret={b32(secret)}&issuer={issuer}"
        run_vsc("otp", "add", "--card", "Test card", link, "--pin", USER_PIN)
    refused = run_vsc("otp", "code", "--card", "Test card", "alice", "--pin", USER_PIN, check=False)
    assert "several OTP accounts match 'alice'" in one_line_error(refused)
    for issuer, secret in secrets.items():
        got = vsc_json("otp", "code", "--card", "Test card", f"{issuer}:alice", "--pin", USER_PIN, "--at", "59")
        assert got == {"code": otp.totp(secret, 59, otp.OtpSpec("totp")).code, "valid_for": 1}


def test_importing_the_same_export_twice_adds_nothing_the_second_time(card: str) -> None:
    link = migration_link(
        [
            {"secret": os.urandom(20), "name": "carol", "issuer": "Bank", "type": Payload.OTP_TYPE_TOTP},
            {"secret": os.urandom(20), "name": "vpn", "type": Payload.OTP_TYPE_HOTP, "counter": 3},
        ]
    )
    assert run_vsc("otp", "import", "--card", "Test card", link, "--pin", USER_PIN).stdout.count("added") == 2
    run_vsc("otp", "code", "--card", "Test card", "vpn", "--pin", USER_PIN)  # the counter moves to 4
    before = vsc_json("otp", "list", "--card", "Test card")
    again = run_vsc("otp", "import", "--card", "Test card", link, "--pin", USER_PIN, check=False)
    assert "already has an OTP account 'Bank:carol'" in one_line_error(again)
    assert again.stdout == ""
    after = vsc_json("otp", "list", "--card", "Test card")
    assert after == before and len(after) == 2 and after[1]["counter"] == 4


def test_a_store_copied_without_its_device_key_gives_no_code(card: str, vsc_home: Path, tmp_path: Path) -> None:
    secret = os.urandom(20)
    run_vsc("otp", "add", "--card", "Test card", f"otpauth://totp/X:y?secret={b32(secret)}&issuer=X", "--pin", USER_PIN)
    other = tmp_path / "other-device"
    shutil.copytree(vsc_home, other, ignore=shutil.ignore_patterns("device.key"))
    moved = {"VSC_HOME": str(other)}
    # The names are public and the copy lists them; the secret needs this device's key, which the copy lacks.
    listed = json.loads(run_vsc("otp", "list", "--card", card, "--json", env=moved).stdout)
    assert [item["name"] for item in listed] == ["X:y"]
    refused = run_vsc("otp", "code", "--card", card, "X:y", "--pin", USER_PIN, "--at", "59", env=moved, check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: this card store belongs to another device (device key mismatch) (CKR_DEVICE_ERROR)"]
    assert refused.stdout == "" and otp.totp(secret, 59, otp.OtpSpec("totp")).code not in refused.stderr
    # Every other line is a log record (the audit log saying the refused login's entry stays unsigned there).
    assert all(" vsc[" in line for line in refused.stderr.splitlines() if not line.startswith("Error:"))
    # The original store, with its device key, still gives the code.
    assert vsc_json("otp", "code", "--card", card, "X:y", "--pin", USER_PIN, "--at", "59")["code"] == (
        otp.totp(secret, 59, otp.OtpSpec("totp")).code
    )


def test_an_export_with_one_account_the_card_has_adds_none_of_them(card: str) -> None:
    have = {"secret": os.urandom(20), "name": "carol", "issuer": "Bank", "type": Payload.OTP_TYPE_TOTP}
    run_vsc("otp", "import", "--card", "Test card", migration_link([have]), "--pin", USER_PIN)
    new = {"secret": os.urandom(20), "name": "dave", "issuer": "Shop", "type": Payload.OTP_TYPE_TOTP}
    again = run_vsc("otp", "import", "--card", "Test card", migration_link([new, have]), "--pin", USER_PIN, check=False)
    assert "already has an OTP account 'Bank:carol'" in one_line_error(again)
    assert [item["name"] for item in vsc_json("otp", "list", "--card", "Test card")] == ["Bank:carol"]
    twice = run_vsc("otp", "import", "--card", "Test card", migration_link([new, new]), "--pin", USER_PIN, check=False)
    assert "the OTP account 'Shop:dave' is given twice" in one_line_error(twice)
    assert [item["name"] for item in vsc_json("otp", "list", "--card", "Test card")] == ["Bank:carol"]


def test_an_import_the_card_refuses_half_way_stores_none(card: str) -> None:
    """Through the Python API (no parser before it): the card refuses the second account (9 digits), and the
    first is not left stored."""
    from vsc_provider.ck.errors import CKRError
    from vsc_provider.oath import service
    from vsc_provider.oath.accounts import Account

    accounts = [
        Account("Bank", "carol", os.urandom(20), otp.OtpSpec("totp")),
        Account("Shop", "dave", os.urandom(20), otp.OtpSpec("totp", digits=9)),
    ]
    with pytest.raises(CKRError) as err:
        service.add("Test card", accounts, USER_PIN)
    assert "6 to 8 digits" in str(err.value)
    assert vsc_json("otp", "list", "--card", "Test card") == []
