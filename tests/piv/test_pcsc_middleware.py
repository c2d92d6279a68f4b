"""The card as a PIV card in a real PC/SC stack: our own pcscd (foreground) with vsmartcard's vpcd reader,
`vsc pcsc serve` as the card, and the middleware that talks to PIV cards: OpenSC (opensc-tool, pkcs15-tool,
pkcs11-tool and opensc-pkcs11.so) and yubico-piv-tool."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pcsc_support import READER, free_port_pair, private_pcscd, reader_has_card, start_serve, stop, wait_for
from piv_support import PIN, SO_PIN, PivHome, make_piv_home, self_signed

from tests.conftest import require_file, require_tool
from tests.pkcs11.p11_support import vsc
from vsc_provider import module
from vsc_provider.ck import constants as C
from vsc_provider.piv import management_key as M
from vsc_provider.piv import objects as O
from vsc_provider.token import service

OPENSC_PKCS11 = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
HERE = Path(__file__).resolve().parent


@dataclass
class Stack:
    piv: PivHome
    workdir: Path
    port: int
    serve: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_tool("pcscd", "pcscd")
    require_file("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "vsmartcard-vpcd")
    require_tool("opensc-tool", "opensc")
    require_tool("yubico-piv-tool", "yubico-piv-tool")
    workdir = tmp_path_factory.mktemp("pcsc")
    piv = make_piv_home(workdir / "vsc-home")
    port = free_port_pair()
    with private_pcscd(workdir, port):
        serve = start_serve(piv.home, piv.serial, port, workdir / "serve.log")
        try:
            wait_for(reader_has_card, 30, f"a card in {READER}")
            yield Stack(piv, workdir, port, serve)
        finally:
            code = stop(serve)
        assert code == 0, (workdir / "serve.log").read_text()


def run(*args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(list(args), capture_output=True, input=stdin, timeout=120)
    out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"{' '.join(args)}:\n{out}"
    return out


def test_opensc_sees_the_reader_with_a_piv_card(stack: Stack) -> None:
    readers = run("opensc-tool", "--list-readers")
    assert any(READER in line and " Yes " in line for line in readers.splitlines()), readers
    assert "Personal Identity Verification Card" in run("opensc-tool", "--reader", READER, "--name")
    atr = run("opensc-tool", "--reader", READER, "--atr")
    assert "3b:87:80:01" in atr.lower()


def test_pkcs15_tool_lists_the_slot_certificates(stack: Stack) -> None:
    out = run("pkcs15-tool", "--reader", READER, "--list-certificates")
    for name, key_id in (("PIV Authentication", "01"), ("Digital Signature", "02"), ("Key Management", "03")):
        assert f"Certificate for {name}" in out
        assert f"ID             : {key_id}" in out
    assert "Card Authentication" in out


def test_opensc_pkcs11_signs_with_the_9a_key_and_the_latency_is_measured(stack: Stack) -> None:
    require_file(OPENSC_PKCS11, "opensc-pkcs11")
    slots = run("pkcs11-tool", "--module", OPENSC_PKCS11, "--list-slots")
    assert READER in slots and "PIV slot 9A" in slots  # the token label: the 9A certificate's name
    data = stack.workdir / "data"
    data.write_bytes(b"signed through OpenSC's PIV driver")
    sig = stack.workdir / "sig"
    run(
        "pkcs11-tool", "--module", OPENSC_PKCS11, "--token-label", "PIV slot 9A", "--login", "--pin", PIN,
        "--sign", "--mechanism", "SHA256-RSA-PKCS", "--id", "01", "--input-file", str(data),
        "--output-file", str(sig),
    )  # fmt: skip
    public = stack.piv.certificates[0x9A].public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(sig.read_bytes(), data.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    # the same key, the same signature (PKCS#1 v1.5 is deterministic), through both modules; median latency
    # (printed for docs/benchmarks.md; no speed bound, but a measurement that did not happen fails)
    timings: dict[str, int] = {}
    signatures: dict[str, bytes] = {}
    for name, path, label in (
        ("opensc-pkcs11 over PIV", OPENSC_PKCS11, "PIV slot 9A"),
        ("vsc PKCS#11 module", str(module.library_path()), "PIV card"),
    ):
        out = subprocess.run(
            [sys.executable, str(HERE / "sign_latency.py"), path, label, PIN, "30"],
            capture_output=True, text=True, timeout=300, env={**_env(), "VSC_HOME": str(stack.piv.home)},
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        micros, signature = out.stdout.split()
        signatures[name] = bytes.fromhex(signature)
        public.verify(signatures[name], b"PIV latency", padding.PKCS1v15(), hashes.SHA256())
        timings[name] = int(micros)
        assert timings[name] > 0, out.stdout
    assert len(set(signatures.values())) == 1  # one key behind both: the same signature
    print(f"\nRSA-2048 SHA256-RSA-PKCS signature, median of 30: {timings}")


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_yubico_piv_tool_status_and_a_test_signature(stack: Stack) -> None:
    # the PIN verified by the tests before stays verified (SELECT does not reset it here, unlike a YubiKey,
    # whose status yubico-piv-tool reads after a SELECT): reset it (VERIFY P1=FF) for the counter to show
    run("opensc-tool", "--reader", READER, "--send-apdu", "00A4040005A000000308", "--send-apdu", "0020FF80")
    status = run("yubico-piv-tool", "--reader", READER, "--action", "status")
    assert "Slot 9a:" in status and "RSA2048" in status and "CN=PIV slot 9A" in status
    assert "Slot 9c:" in status and "ECCP256" in status
    assert "Slot 9e:" in status and "ECCP384" in status
    assert "PIN tries left:\t10" in status
    cert = stack.workdir / "9a.pem"
    cert.write_bytes(stack.piv.certificates[0x9A].public_bytes(serialization.Encoding.PEM))
    out = run(
        "yubico-piv-tool", "--reader", READER, "--action", "verify-pin", f"--pin={PIN}",
        "--action", "test-signature", "--slot", "9a", "--input", str(cert),
    )  # fmt: skip
    assert "Successfully verified PIN" in out and "Successful RSA verification" in out
    cert.write_bytes(stack.piv.certificates[0x9C].public_bytes(serialization.Encoding.PEM))
    out = run(
        "yubico-piv-tool", "--reader", READER, "--action", "verify-pin", f"--pin={PIN}",
        "--action", "test-signature", "--slot", "9c", "--input", str(cert),
    )  # fmt: skip
    assert "Successful ECDSA verification" in out


def test_the_audit_log_names_the_piv_card_as_the_front_end(stack: Stack) -> None:
    cert = stack.workdir / "9c.pem"
    cert.write_bytes(stack.piv.certificates[0x9C].public_bytes(serialization.Encoding.PEM))
    run(
        "yubico-piv-tool", "--reader", READER, "--action", "verify-pin", f"--pin={PIN}",
        "--action", "test-signature", "--slot", "9c", "--input", str(cert),
    )  # fmt: skip
    # VERIFY P1=FF ends the PIN's verified state: a logout, written at once with the signature before it
    run("opensc-tool", "--reader", READER, "--send-apdu", "00A4040005A000000308", "--send-apdu", "0020FF80")
    listing = vsc(stack.piv.home, "audit", "list", "--card", stack.piv.serial, "--json").stdout
    served = [e for e in json.loads(listing)["entries"] if e["origin"].startswith("piv/")]
    assert [(e["kind"], e["key_id"]) for e in served[-3:]] == [("login-user", ""), ("sign", "02"), ("logout-user", "")]
    assert "verified" in vsc(stack.piv.home, "audit", "verify", "--card", stack.piv.serial).stdout


def test_a_wrong_pin_counts_down_and_blocks_then_the_puk_unblocks(stack: Stack) -> None:
    seen: list[int] = []
    deadline = time.monotonic() + 90  # the card's waiting periods between wrong tries: 0.05 s doubling
    while time.monotonic() < deadline and (not seen or seen[-1] > 0):
        result = subprocess.run(
            ["yubico-piv-tool", "--reader", READER, "--action", "verify-pin", "--pin=000000"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        text = result.stdout + result.stderr
        assert result.returncode != 0
        left = re.search(r"(\d+) tries left", text)
        if left:
            seen.append(int(left.group(1)))
        elif "blocked" in text.lower():
            seen.append(0)
        else:  # a waiting period between wrong tries (6985): nothing counted, try again
            time.sleep(0.2)
    assert seen == list(range(9, -1, -1)), seen
    status = run("yubico-piv-tool", "--reader", READER, "--action", "status")
    assert "PIN tries left:\t0" in status
    blocked = subprocess.run(
        ["yubico-piv-tool", "--reader", READER, "--action", "verify-pin", f"--pin={PIN}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert blocked.returncode != 0 and "blocked" in (blocked.stdout + blocked.stderr).lower()
    run("yubico-piv-tool", "--reader", READER, "--action", "unblock-pin", f"--pin={SO_PIN}", f"--new-pin={PIN}")
    assert "PIN tries left:\t10" in run("yubico-piv-tool", "--reader", READER, "--action", "status")
    run("yubico-piv-tool", "--reader", READER, "--action", "verify-pin", f"--pin={PIN}")


def test_yubico_piv_tool_generates_self_signs_and_imports_with_a_3des_management_key(stack: Stack) -> None:
    # yubico-piv-tool 2.2 authenticates with 3DES only: give the card such a key (the SO PIN proves it)
    engine = stack.piv.engine()
    key = M.set_key(engine, stack.piv.card(engine), SO_PIN.encode(), O.ALG_3DES).key.hex()
    pub, cert = stack.workdir / "gen-pub.pem", stack.workdir / "gen-cert.pem"
    wrong = subprocess.run(
        ["yubico-piv-tool", "--reader", READER, f"--key={'01' * 24}", "-a", "generate", "-s", "9e", "-A", "ECCP256"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert wrong.returncode != 0 and "failed authentication" in (wrong.stdout + wrong.stderr).lower()
    run(
        "yubico-piv-tool", "--reader", READER, f"--key={key}", "-a", "generate", "-s", "9e", "-A", "ECCP256",
        "-o", str(pub),
    )  # fmt: skip
    # an issuer (here a throw-away CA) certifies the public key the card gave out
    public = serialization.load_pem_public_key(pub.read_bytes())
    ca = ec.generate_private_key(ec.SECP256R1())
    issued = self_signed(ca, "test CA")
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "made through PIV")]))
        .issuer_name(issued.subject)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(ca, hashes.SHA256())
    )
    cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    run("yubico-piv-tool", "--reader", READER, f"--key={key}", "-a", "import-certificate", "-s", "9e", "-i", str(cert))
    status = run("yubico-piv-tool", "--reader", READER, "-a", "status")
    assert "CN=made through PIV" in status
    out = run(
        "yubico-piv-tool", "--reader", READER, "-a", "verify-pin", f"--pin={PIN}", "-a", "test-signature",
        "-s", "9e", "-i", str(cert),
    )  # fmt: skip
    assert "Successful ECDSA verification" in out
    # the new key pair and certificate are PKCS#11 objects with 9E's CKA_ID (04)
    card = stack.piv.card(engine)
    engine.poll()
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    found = service.with_key_id(card, b"\x04", C.CKO_PUBLIC_KEY)
    assert [o.attrs[C.CKA_PUBLIC_KEY_INFO] for o in found] == [spki]
    certs = service.with_key_id(card, b"\x04", C.CKO_CERTIFICATE)
    assert len(certs) == 1 and x509.load_der_x509_certificate(certs[0].attrs[C.CKA_VALUE]).public_key() == public
