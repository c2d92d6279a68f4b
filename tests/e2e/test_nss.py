"""NSS tools: modutil registers the module in an NSS database, certutil lists the token, its certificates as user
certificates and its keys, and tstclnt completes TLS 1.3 client authentication against openssl s_server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from e2e_support import USER_PIN, CardKey, E2ECard, assert_server_saw, require_tool, run, start_s_server

TOKEN = "E2E card"


@pytest.fixture(scope="module")
def nssdb(e2e_card: E2ECard, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh NSS database with the module added by modutil and the test CA trusted for servers."""
    for tool in ("modutil", "certutil", "tstclnt"):
        require_tool(tool, "libnss3-tools")
    db = tmp_path_factory.mktemp("nssdb")
    spec = f"sql:{db}"
    # Every NSS tool gets the card's environment: once the module is in the db, each one loads it, and without
    # VSC_HOME it would open (and create) the user's own store.
    run("certutil -N (new NSS db)", ["certutil", "-N", "-d", spec, "--empty-password"], env=e2e_card.env)
    run(
        "modutil -add",
        ["modutil", "-dbdir", spec, "-add", "vsc-provider", "-libfile", e2e_card.module, "-force"],
        env=e2e_card.env,
    )
    run(
        "certutil -A (trust the test CA)",
        ["certutil", "-A", "-d", spec, "-n", "test CA", "-t", "CT,,", "-i", str(e2e_card.ca_path)],
        env=e2e_card.env,
    )
    return spec


def test_modutil_lists_the_token(e2e_card: E2ECard, nssdb: str) -> None:
    out = run("modutil -list", ["modutil", "-dbdir", nssdb, "-list", "vsc-provider"], env=e2e_card.env).stdout
    assert f"Token Name: {TOKEN}" in out or f"token: {TOKEN}" in out, f"modutil -list does not show the card:\n{out}"
    assert e2e_card.serial in out, out


def test_certutil_lists_user_certs(e2e_card: E2ECard, nssdb: str) -> None:
    out = run("certutil -L -h TOKEN", ["certutil", "-L", "-d", nssdb, "-h", TOKEN], env=e2e_card.env).stdout
    for k in e2e_card.keys:
        line = next((ln for ln in out.splitlines() if ln.startswith(f"{TOKEN}:{k.label} ")), None)
        assert line is not None, f"certutil -L -h {TOKEN!r} does not list {k.label}:\n{out}"
        assert line.split()[-1] == "u,u,u", f"{k.label} is not a user certificate (no key found for it): {line}"
    pem = run(
        "certutil -L -n -a",
        ["certutil", "-L", "-d", nssdb, "-n", f"{TOKEN}:{e2e_card.rsa.label}", "-a"],
        env=e2e_card.env,
    ).stdout
    assert pem.replace("\r", "").strip() == e2e_card.rsa.cert.public_bytes(Encoding.PEM).decode().strip(), (
        f"certutil -L -a printed another certificate than the card's:\n{pem}"
    )


def test_certutil_lists_keys(e2e_card: E2ECard, nssdb: str, tmp_path: Path) -> None:
    pwfile = tmp_path / "pin"
    pwfile.write_text(USER_PIN + "\n")
    out = run(
        "certutil -K -h TOKEN", ["certutil", "-K", "-d", nssdb, "-h", TOKEN, "-f", str(pwfile)], env=e2e_card.env
    ).stdout
    for k in e2e_card.keys:
        assert k.id in out, f"certutil -K does not list key id {k.id} ({k.label}):\n{out}"
    assert " rsa " in out and " ec " in out, out


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_tstclnt_tls13_client_auth(e2e_card: E2ECard, nssdb: str, background: Any, key: str) -> None:
    k: CardKey = getattr(e2e_card, key)
    server, port = start_s_server(background, e2e_card, "tls1_3")
    run(
        f"tstclnt TLS 1.3 with the card's {key} certificate",
        ["tstclnt", "-h", "127.0.0.1", "-p", str(port), "-d", nssdb, "-n", f"{TOKEN}:{k.label}",
         "-w", USER_PIN, "-V", "tls1.3:tls1.3", "-Q"],
        env=e2e_card.env,
        timeout=60,
    )  # fmt: skip
    server.wait_exit()
    assert_server_saw(server, k, "tstclnt")
    assert "TLS_AES" in server.output(), server.output()
