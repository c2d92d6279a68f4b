"""OpenSC pkcs11-tool against the module: listing, key generation, signing (verified by openssl) and --test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_support import USER_PIN, CardKey, E2ECard, require_tool, run, run_vsc


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool("pkcs11-tool", "opensc")
    require_tool("openssl", "openssl")


def p11tool(card: E2ECard, what: str, *args: str, login: bool = False) -> str:
    cmd = ["pkcs11-tool", "--module", card.module, *args]
    if login:
        cmd += ["--login", "--pin", USER_PIN]
    result = run(f"pkcs11-tool {what}", cmd, env=card.env)
    return result.stdout + result.stderr


def test_list_slots_shows_the_card(e2e_card: E2ECard) -> None:
    out = p11tool(e2e_card, "-L (list slots)", "-L")
    assert "token label        : E2E card" in out, f"pkcs11-tool -L did not show the card:\n{out}"
    assert e2e_card.serial in out, f"pkcs11-tool -L did not show serial {e2e_card.serial}:\n{out}"
    assert "token initialized" in out and "PIN initialized" in out, out


def test_list_objects_before_and_after_login(e2e_card: E2ECard) -> None:
    public = p11tool(e2e_card, "-O (list objects, no login)", "-O")
    for k in e2e_card.keys:
        assert f"ID:         {k.id}" in public, f"pkcs11-tool -O without login lacks id {k.id}:\n{public}"
    assert "Certificate Object" in public, f"pkcs11-tool -O without login shows no certificate:\n{public}"
    assert "Private Key Object" not in public, f"private keys visible before login:\n{public}"
    assert "RSA 2048 bits" in public and "EC" in public, public

    logged_in = p11tool(e2e_card, "-O (list objects, logged in)", "-O", login=True)
    assert logged_in.count("Private Key Object") == 2, f"pkcs11-tool -O after login:\n{logged_in}"
    assert "subject:    DN: O=vsc e2e, CN=vsc e2e rsa user" in logged_in, logged_in


SIGNATURES = [
    ("rsa", "SHA256-RSA-PKCS", []),
    ("rsa", "SHA256-RSA-PKCS-PSS", ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-2"]),
    ("ec", "ECDSA-SHA256", []),
]


@pytest.mark.parametrize(("key", "mechanism", "verify_opts"), SIGNATURES, ids=[m for _, m, _ in SIGNATURES])
def test_sign_verified_by_openssl(
    e2e_card: E2ECard, tmp_path: Path, key: str, mechanism: str, verify_opts: list[str]
) -> None:
    k: CardKey = getattr(e2e_card, key)
    message = tmp_path / "message.txt"
    message.write_text("signed by the virtual card through pkcs11-tool\n")
    signature = tmp_path / "signature.bin"
    extra = ["--signature-format", "openssl"] if key == "ec" else []
    if "PSS" in mechanism:
        extra = ["--mgf", "MGF1-SHA256", "--salt-len", "32"]
    p11tool(
        e2e_card, f"--sign -m {mechanism}", "--sign", "--id", k.id, "-m", mechanism,
        "-i", str(message), "-o", str(signature), *extra, login=True,
    )  # fmt: skip
    pub = tmp_path / "pub.pem"
    pub.write_bytes(k.public_pem)
    out = run(
        f"openssl dgst -verify of the {mechanism} signature from pkcs11-tool",
        ["openssl", "dgst", "-sha256", "-verify", str(pub), *verify_opts, "-signature", str(signature), str(message)],
    )
    assert "Verified OK" in out.stdout


def test_keypairgen_rsa_and_ec(fresh_card: E2ECard, tmp_path: Path) -> None:
    for key_type, key_id, label in (("rsa:2048", "a1", "gen-rsa"), ("EC:prime256v1", "a2", "gen-ec")):
        out = p11tool(
            fresh_card, f"--keypairgen --key-type {key_type}", "--keypairgen", "--key-type", key_type,
            "--id", key_id, "--label", label, login=True,
        )  # fmt: skip
        assert "Private Key Object" in out and "Public Key Object" in out, out
        # The key made by pkcs11-tool signs, and the signature verifies against the public key it exported.
        message = tmp_path / f"{label}.txt"
        message.write_text(label)
        sig = tmp_path / f"{label}.sig"
        mech = "SHA256-RSA-PKCS" if key_type.startswith("rsa") else "ECDSA-SHA256"
        fmt = [] if key_type.startswith("rsa") else ["--signature-format", "openssl"]
        p11tool(fresh_card, f"--sign with the generated {label}", "--sign", "--id", key_id, "-m", mech,
                "-i", str(message), "-o", str(sig), *fmt, login=True)  # fmt: skip
        der = tmp_path / f"{label}.der"
        p11tool(
            fresh_card, f"--read-object {label}", "--read-object", "--type", "pubkey", "--id", key_id, "-o", str(der)
        )
        out2 = run(
            f"openssl dgst -verify ({label})",
            [
                "openssl",
                "dgst",
                "-sha256",
                "-keyform",
                "DER",
                "-verify",
                str(der),
                "-signature",
                str(sig),
                str(message),
            ],
        )
        assert "Verified OK" in out2.stdout
    # The CLI (another process, same store) sees the keys pkcs11-tool made.
    listing = json.loads(
        run_vsc("key", "list", "--card", "E2E card", "--pin", USER_PIN, "--json", env=fresh_card.env).stdout
    )
    labels = {(o["label"], o["kind"]) for o in listing}
    for label in ("gen-rsa", "gen-ec"):
        assert (label, "private") in labels and (label, "public") in labels, f"vsc key list after keypairgen: {listing}"


def test_builtin_test_with_keys_present(fresh_card: E2ECard) -> None:
    out = p11tool(fresh_card, "--test", "--test", login=True)
    assert "No errors" in out, f"pkcs11-tool --test reported errors:\n{out}"
    assert "RSA-PKCS: OK" in out, f"pkcs11-tool --test did not exercise the RSA key:\n{out}"


def test_raw_rsa_x509_sign_and_decrypt_in_a_c_host(e2e_card: E2ECard, tmp_path: Path) -> None:
    """CKM_RSA_X_509 runs in OpenSSL inside the module (token/rsa_raw.py), here in a host that is not Python:
    `openssl pkeyutl -verifyrecover` with no padding recovers the block, and a raw encryption decrypts."""
    k = e2e_card.rsa
    pub = tmp_path / "pub.pem"
    pub.write_bytes(k.public_pem)
    block = tmp_path / "block.bin"
    block.write_bytes(b"\x00" + bytes(range(1, 256)))
    signature, recovered = tmp_path / "signature.bin", tmp_path / "recovered.bin"
    p11tool(
        e2e_card, "--sign -m RSA-X-509", "--sign", "--id", k.id, "-m", "RSA-X-509",
        "-i", str(block), "-o", str(signature), login=True,
    )  # fmt: skip
    run(
        "openssl pkeyutl -verifyrecover of the RSA-X-509 signature",
        ["openssl", "pkeyutl", "-verifyrecover", "-pubin", "-inkey", str(pub), "-pkeyopt", "rsa_padding_mode:none",
         "-in", str(signature), "-out", str(recovered)],
    )  # fmt: skip
    assert recovered.read_bytes() == block.read_bytes()
    ciphertext, plain = tmp_path / "ciphertext.bin", tmp_path / "plain.bin"
    run(
        "openssl pkeyutl -encrypt without padding",
        ["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub), "-pkeyopt", "rsa_padding_mode:none",
         "-in", str(block), "-out", str(ciphertext)],
    )  # fmt: skip
    p11tool(
        e2e_card, "--decrypt -m RSA-X-509", "--decrypt", "--id", k.id, "-m", "RSA-X-509",
        "-i", str(ciphertext), "-o", str(plain), login=True,
    )  # fmt: skip
    assert plain.read_bytes() == block.read_bytes()
