"""`vsc cert request|self-sign|import` and the label rules: what a user does to get a certificate onto a card."""

from __future__ import annotations

import json
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import SO_PIN, USER_PIN, require_tool, run_vsc


def _key(card: str, label: str, kind: str) -> None:
    run_vsc("key", "generate", "--card", card, "--type", kind, "--label", label, "--pin", USER_PIN)


def test_self_signed_certificates_verify_with_openssl_and_import_under_the_key_label(vsc_home, card, tmp_path):
    openssl = require_tool("openssl", "openssl")
    for label, kind in (("work", "rsa2048"), ("ec", "p384"), ("ed", "ed25519")):
        _key(card, label, kind)
        pem = tmp_path / f"{label}.pem"
        out = run_vsc(
            "cert", "self-sign", "--card", card, "--key", label, "--subject", "CN=Alice,O=Example",
            "--pin", USER_PIN, "--out", str(pem),
        )  # fmt: skip
        assert f"wrote {pem}" in out.stdout
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        assert cert.subject.rfc4514_string() == "CN=Alice,O=Example" == cert.issuer.rfc4514_string()
        verified = subprocess.run([openssl, "verify", "-CAfile", str(pem), str(pem)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr  # the card's signature over the certificate is valid
        imported = json.loads(run_vsc("cert", "import", "--card", card, str(pem), "--pin", USER_PIN, "--json").stdout)
        keys = json.loads(run_vsc("key", "list", "--card", card, "--json").stdout)
        public = next(k for k in keys if k["label"] == label)
        assert (imported["label"], imported["id"]) == (label, public["id"])
        assert imported["uri"].endswith(f";object={label};type=cert")


def test_request_is_signed_by_the_card_key(vsc_home, card, tmp_path):
    openssl = require_tool("openssl", "openssl")
    _key(card, "work", "p256")
    csr_path = tmp_path / "work.csr"
    run_vsc("cert", "request", "--card", card, "--key", "work", "--pin", USER_PIN, "--out", str(csr_path))
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid and csr.subject.rfc4514_string() == "CN=work"
    keys = json.loads(run_vsc("key", "list", "--card", card, "--json").stdout)
    assert any(k["kind"] == "public" and k["key_type"] == "EC" for k in keys)
    checked = subprocess.run(
        [openssl, "req", "-in", str(csr_path), "-verify", "-noout"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    missing = run_vsc("cert", "request", "--card", card, "--key", "nope", "--pin", USER_PIN, check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no private key 'nope'")


def test_same_certificate_twice_is_a_no_op(vsc_home, card, tmp_path):
    _key(card, "work", "p256")
    pem = tmp_path / "work.pem"
    run_vsc("cert", "self-sign", "--card", card, "--key", "work", "--pin", USER_PIN, "--out", str(pem))
    assert run_vsc("cert", "import", "--card", card, str(pem), "--pin", USER_PIN).stdout.startswith("imported ")
    again = run_vsc("cert", "import", "--card", card, str(pem), "--pin", USER_PIN)
    assert again.stdout.startswith("already on the card, nothing imported: ")
    shown = json.loads(run_vsc("card", "show", card, "--json").stdout)
    assert [o["kind"] for o in shown["objects"]].count("cert") == 1


def test_certificate_without_a_key_is_refused_unless_no_key_ok(vsc_home, card, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from tests.test_cli_support import self_signed

    pem = tmp_path / "other.pem"
    pem.write_bytes(
        self_signed(ec.generate_private_key(ec.SECP256R1()), "Other").public_bytes(serialization.Encoding.PEM)
    )
    refused = run_vsc("cert", "import", "--card", card, str(pem), "--pin", USER_PIN, check=False)
    assert refused.returncode == 1
    assert "no key on card 'Test card' matches this certificate (--no-key-ok imports it anyway)" in refused.stderr
    ok = json.loads(
        run_vsc("cert", "import", "--card", card, str(pem), "--pin", USER_PIN, "--no-key-ok", "--json").stdout
    )
    assert ok["label"] == "Other" and ok["kind"] == "cert"


def test_duplicate_card_label_is_refused(vsc_home, card):
    again = run_vsc("card", "create", "--label", "Test card", "--pin", USER_PIN, "--so-pin", SO_PIN, check=False)
    assert again.returncode == 1
    assert (
        again.stderr.strip() == f"Error: a card labelled 'Test card' exists already (serial {card}) (CKR_ARGUMENTS_BAD)"
    )
    assert len(json.loads(run_vsc("card", "list", "--json").stdout)) == 1


def test_key_delete_says_no_such_key_before_asking_for_the_pin(vsc_home, card):
    # No --pin and no terminal: a prompt would fail with "User PIN needed"; the unknown key is reported first.
    missing = run_vsc("key", "delete", "--card", card, "nope", check=False)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == "Error: no such key: nothing labelled 'nope' on card 'Test card' (CKR_OBJECT_HANDLE_INVALID)"
    )


def test_so_pin_messages_name_the_so_pin_and_check_length_first(vsc_home):
    short = run_vsc("card", "create", "--label", "x", "--pin", USER_PIN, "--so-pin", "1234", check=False)
    assert short.stderr.strip() == "Error: an SO PIN has 8 to 32 digits"
    run = run_vsc("card", "create", "--label", "x", "--pin", USER_PIN, "--so-pin", "12345678", check=False)
    assert run.stderr.strip() == "Error: an SO PIN may not be an ascending or descending run"
    user = run_vsc("card", "create", "--label", "x", "--pin", "12345", "--so-pin", SO_PIN, check=False)
    assert user.stderr.strip() == "Error: a PIN has 6 to 32 digits"
