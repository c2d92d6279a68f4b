"""`vsc identity ca` exports the identity CA that issued an activated card's certificates, and `vsc setup
trust-ca` installs it for a local service (issue 14): a real NSS db then validates the card's certificate as a
client certificate (certutil -V), and OpenSSL validates it against the PEM file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import require_tool, run_vsc
from tests.provisioning.test_activation import activate, certs_of
from tests.server.idserver import IdServer


def _card_cert(tmp_path: Path, serial: str) -> tuple[x509.Certificate, Path]:
    cert = next(iter(certs_of(serial).values()))
    path = tmp_path / "card.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, path


def test_identity_ca_exports_the_issuer_of_the_cards_certificates(
    id_server: IdServer, vsc_home: Path, tmp_path: Path
) -> None:
    serial = activate(id_server.link("carol"))["serial"]
    printed = run_vsc("identity", "ca", "--card", serial).stdout.encode()
    ca = x509.load_pem_x509_certificate(printed)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert, _ = _card_cert(tmp_path, serial)
    cert.verify_directly_issued_by(ca)
    # The server's own view of its CA (GET /v1/server) is the same certificate.
    with id_server.client() as client:
        info = client.call("GET", "/v1/server")
    from vsc_provider.provisioning import wire

    assert wire.unb64u(info["ca"]) == ca.public_bytes(serialization.Encoding.DER)
    out = tmp_path / "sub" / "ca.pem"
    run_vsc("identity", "ca", "--card", serial, "--out", str(out))
    assert out.read_bytes() == printed


def test_a_local_card_has_no_identity_ca(vsc_home: Path, card: str) -> None:
    refused = run_vsc("identity", "ca", "--card", card, check=False)
    assert refused.returncode != 0
    assert refused.stderr.count("\n") == 1 and "not bound to a server" in refused.stderr


def test_trust_ca_in_an_nss_db_validates_the_card_as_a_client(
    id_server: IdServer, vsc_home: Path, tmp_path: Path
) -> None:
    certutil = require_tool("certutil", "libnss3-tools")
    serial = activate(id_server.link("dave"))["serial"]
    _, card_pem = _card_cert(tmp_path, serial)
    db = tmp_path / "nssdb"

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [certutil, "-V", "-d", f"sql:{db}", "-n", "card", "-u", "C"], capture_output=True, text=True, timeout=60
        )

    db.mkdir()
    subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True, timeout=60)
    subprocess.run(
        [certutil, "-A", "-d", f"sql:{db}", "-n", "card", "-t", ",,", "-a", "-i", str(card_pem)], check=True, timeout=60
    )
    assert verify().returncode != 0  # the issuer is unknown to this db
    done = run_vsc("setup", "trust-ca", "--card", serial, "--nss-db", str(db))
    assert "trusted" in done.stdout
    checked = verify()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "certificate is valid" in checked.stdout
    listed = subprocess.run([certutil, "-L", "-d", f"sql:{db}"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in listed.splitlines() if line.startswith("vsc identity CA 127.0.0.1 port ")]
    assert len(ours) == 1 and ours[0].split()[-1] == "T,C,", listed
    again = run_vsc("setup", "trust-ca", "--card", serial, "--nss-db", str(db))
    assert "nothing to change" in again.stdout


def test_trust_ca_as_a_pem_file_validates_with_openssl(id_server: IdServer, vsc_home: Path, tmp_path: Path) -> None:
    openssl = require_tool("openssl", "openssl")
    serial = activate(id_server.link("erin"))["serial"]
    _, card_pem = _card_cert(tmp_path, serial)
    pem = tmp_path / "trust" / "vsc-ca.pem"
    assert "wrote" in run_vsc("setup", "trust-ca", "--card", serial, "--pem", str(pem)).stdout
    checked = subprocess.run([openssl, "verify", "-CAfile", str(pem), str(card_pem)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "up to date" in run_vsc("setup", "trust-ca", "--card", serial, "--pem", str(pem)).stdout
    both = run_vsc("setup", "trust-ca", "--card", serial, check=False)
    assert both.returncode != 0 and "--nss-db" in both.stderr
    assert json.loads(run_vsc("card", "list", "--json").stdout)
