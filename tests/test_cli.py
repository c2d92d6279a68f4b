"""The `vsc` command as users run it: a subprocess on a private VSC_HOME."""

from __future__ import annotations

import datetime
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import SO_PIN, USER_PIN, run_vsc


def test_card_lifecycle_with_json(vsc_home):
    created = json.loads(
        run_vsc("card", "create", "--label", "Work card", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json").stdout
    )
    assert created["uri"].startswith("pkcs11:") and "token=Work%20card" in created["uri"]
    assert f"serial={created['serial']}" in created["uri"]
    listed = json.loads(run_vsc("card", "list", "--json").stdout)
    assert [c["serial"] for c in listed] == [created["serial"]]
    assert listed[0]["server"] is None
    run_vsc("card", "delete", created["serial"], "--yes")
    assert json.loads(run_vsc("card", "list", "--json").stdout) == []
    assert (vsc_home / "store.sqlite").exists()
    assert (vsc_home / "device.key").stat().st_mode & 0o077 == 0


def test_keys_certificates_and_uris(vsc_home, card):
    keys = json.loads(
        run_vsc(
            "key", "generate", "--card", card, "--type", "p256", "--label", "tls", "--pin", USER_PIN, "--json"
        ).stdout
    )
    public = next(k for k in keys if k["kind"] == "public")
    assert public["details"]["curve"] == "1.2.840.10045.3.1.7"
    assert ";object=tls;type=public" in public["uri"] and ";id=%" in public["uri"]
    # Before login, `card show` lists the public key but not the private one.
    shown = json.loads(run_vsc("card", "show", card, "--json").stdout)
    assert {o["kind"] for o in shown["objects"]} == {"public"}
    with_pin = json.loads(run_vsc("card", "show", card, "--pin", USER_PIN, "--json").stdout)
    assert {o["kind"] for o in with_pin["objects"]} == {"public", "private"}

    # A certificate for that key, made outside: the import finds the key's CKA_ID by public key.
    from vsc_provider.token.engine import Engine

    engine = Engine()
    state = next(iter(engine.cards.values()))
    pub_obj = next(o for o in state.objects.values() if o.klass == 2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Alice")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(engine.crypto_key(state, pub_obj))
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    pem = vsc_home / "alice.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    imported = json.loads(run_vsc("cert", "import", "--card", card, str(pem), "--pin", USER_PIN, "--json").stdout)
    assert imported["id"] == public["id"]
    assert imported["label"] == "tls"  # the key's label, so object=tls;type=cert URIs find it
    assert imported["details"]["subject"] == "CN=Alice"
    exported = run_vsc("cert", "export", "--card", card, "tls").stdout
    assert x509.load_pem_x509_certificate(exported.encode()) == cert
    deleted = run_vsc("key", "delete", "--card", card, public["id"], "--pin", USER_PIN).stdout
    assert "deleted 3 object(s)" in deleted


def test_pin_change_and_reset(vsc_home, card):
    run_vsc("pin", "change", "--card", card, "--old", USER_PIN, "--new", "583920")
    bad = run_vsc("key", "list", "--card", card, "--pin", USER_PIN, check=False)
    assert bad.returncode != 0 and "wrong PIN" in bad.stderr and "CKR_PIN_INCORRECT" in bad.stderr
    run_vsc("key", "list", "--card", card, "--pin", "583920")
    run_vsc("pin", "reset", "--card", card, "--so-pin", SO_PIN, "--new", "640271")
    run_vsc("key", "list", "--card", card, "--pin", "640271")


def test_clear_one_line_errors(vsc_home, card):
    weak = run_vsc("card", "create", "--label", "x", "--pin", "123456", "--so-pin", SO_PIN, check=False)
    assert weak.returncode != 0
    assert weak.stderr.strip().splitlines() == ["Error: a PIN may not be an ascending or descending run"]
    missing = run_vsc("key", "list", "--card", "nope", check=False)
    assert missing.returncode != 0 and "no card 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    no_pin = run_vsc("key", "generate", "--card", card, "--label", "k", check=False)
    assert no_pin.returncode != 0 and "needed" in no_pin.stderr


def test_post_quantum_keys(vsc_home, card):
    made = {}
    for kind in ("ml-dsa-65", "ml-kem-768"):
        keys = json.loads(
            run_vsc(
                "key", "generate", "--card", card, "--type", kind, "--label", kind, "--pin", USER_PIN, "--json"
            ).stdout
        )
        assert {k["kind"] for k in keys} == {"public", "private"}
        made[kind] = keys
    assert {k["details"]["parameter_set"] for k in made["ml-dsa-65"]} == {"ML-DSA-65"}
    assert {k["key_type"] for k in made["ml-kem-768"]} == {"ML-KEM"}
    listed = json.loads(run_vsc("key", "list", "--card", card, "--pin", USER_PIN, "--json").stdout)
    assert sorted((k["label"], k["kind"], k["key_type"]) for k in listed) == [
        ("ml-dsa-65", "private", "ML-DSA"),
        ("ml-dsa-65", "public", "ML-DSA"),
        ("ml-kem-768", "private", "ML-KEM"),
        ("ml-kem-768", "public", "ML-KEM"),
    ]
    human = run_vsc("key", "list", "--card", card, "--pin", USER_PIN).stdout
    assert "ML-DSA" in human and "ML-KEM" in human
    bad = run_vsc(
        "key", "generate", "--card", card, "--type", "ml-kem-512", "--label", "x", "--pin", USER_PIN, check=False
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_module_path_and_p11kit_file(vsc_home, module_path, tmp_path):
    assert run_vsc("module", "path").stdout.strip() == module_path
    target = tmp_path / "modules" / "vsc.module"
    run_vsc("module", "p11-kit", "--write", str(target))
    assert f"module: {module_path}" in target.read_text()


def test_card_policy_chosen_at_creation_and_shown(vsc_home):
    created = json.loads(
        run_vsc(
            "card",
            "create",
            "--label",
            "Rig card",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
            "--policy",
            "compatible",
            "--json",
        ).stdout
    )
    assert created["policy"] == "compatible"
    shown = json.loads(run_vsc("card", "show", created["serial"], "--json").stdout)
    assert shown["policy"] == "compatible"
    assert "compatible policy" in run_vsc("card", "show", created["serial"]).stdout
    default = json.loads(
        run_vsc("card", "create", "--label", "Own card", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json").stdout
    )
    assert default["policy"] == "strict"
    short = run_vsc("card", "create", "--label", "Weak", "--pin", "1234", "--so-pin", "5678", check=False)
    assert short.returncode != 0 and "Traceback" not in short.stderr and short.stderr.count("\n") == 1
    # PIN changes follow the card's policy: any 4+ bytes on the rig card, strict's rules on the other.
    run_vsc("pin", "change", "--card", "Rig card", "--old", "1234", "--new", "abcd")
    run_vsc("pin", "reset", "--card", "Rig card", "--so-pin", "5678", "--new", "4321")
    weak = run_vsc("pin", "change", "--card", "Own card", "--old", USER_PIN, "--new", "1234", check=False)
    assert weak.returncode != 0 and "Traceback" not in weak.stderr
