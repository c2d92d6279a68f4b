"""OpenSSL 3 with the libp11 engine: signatures, a CSR and TLS client authentication with keys on the card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    USER_PIN,
    CardKey,
    E2ECard,
    assert_server_saw,
    engine_path,
    openssl_engine_conf,
    require_tool,
    run,
    start_s_server,
)


@pytest.fixture(scope="module")
def engine_env(e2e_card: E2ECard, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The engine configured by an openssl.cnf written for the test (and PKCS11_MODULE_PATH as libp11 reads it)."""
    require_tool("openssl", "openssl")
    engine_path()
    conf = openssl_engine_conf(e2e_card, tmp_path_factory.mktemp("openssl") / "openssl.cnf")
    return {**e2e_card.env, "OPENSSL_CONF": str(conf), "PKCS11_MODULE_PATH": e2e_card.module}


ENGINE = ["-engine", "pkcs11", "-keyform", "engine"]


def public_pem(tmp_path: Path, key: CardKey) -> str:
    path = tmp_path / f"{key.label}.pub.pem"
    path.write_bytes(key.public_pem)
    return str(path)


DGST_CASES = [
    ("rsa", "pkcs1", []),
    ("rsa", "pss", ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]),
    ("ec", "ecdsa", []),
]


@pytest.mark.parametrize(("key", "name", "opts"), DGST_CASES, ids=[n for _, n, _ in DGST_CASES])
def test_dgst_sign(
    e2e_card: E2ECard, engine_env: dict[str, str], tmp_path: Path, key: str, name: str, opts: list[str]
) -> None:
    k: CardKey = getattr(e2e_card, key)
    message = tmp_path / "message.txt"
    message.write_text(f"openssl dgst {name} with the card\n")
    sig = tmp_path / "sig.bin"
    run(
        f"openssl dgst -sign ({name}) through the libp11 engine",
        ["openssl", "dgst", "-sha256", *ENGINE, "-sign", k.uri(pin=True), *opts, "-out", str(sig), str(message)],
        env=engine_env,
    )
    verify_opts = [o.replace("rsa_pss_saltlen:32", "rsa_pss_saltlen:-2") for o in opts]
    out = run(
        f"openssl dgst -verify of the engine's {name} signature against the certificate's key",
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            public_pem(tmp_path, k),
            *verify_opts,
            "-signature",
            str(sig),
            str(message),
        ],
    )
    assert "Verified OK" in out.stdout


PKEYUTL_CASES = [
    ("rsa", "pkcs1", ["-pkeyopt", "digest:sha256"]),
    ("rsa", "pss", ["-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:32"]),
    ("ec", "ecdsa", ["-pkeyopt", "digest:sha256"]),
]


@pytest.mark.parametrize(("key", "name", "opts"), PKEYUTL_CASES, ids=[n for _, n, _ in PKEYUTL_CASES])
def test_pkeyutl_sign(
    e2e_card: E2ECard, engine_env: dict[str, str], tmp_path: Path, key: str, name: str, opts: list[str]
) -> None:
    k: CardKey = getattr(e2e_card, key)
    message = tmp_path / "message.txt"
    message.write_text(f"openssl pkeyutl {name} with the card\n")
    digest = tmp_path / "digest.bin"
    run("openssl dgst -binary", ["openssl", "dgst", "-sha256", "-binary", "-out", str(digest), str(message)])
    sig = tmp_path / "sig.bin"
    run(
        f"openssl pkeyutl -sign ({name}) through the libp11 engine",
        [
            "openssl",
            "pkeyutl",
            "-sign",
            *ENGINE,
            "-inkey",
            k.uri(pin=True),
            *opts,
            "-in",
            str(digest),
            "-out",
            str(sig),
        ],
        env=engine_env,
    )
    out = run(
        f"openssl pkeyutl -verify of the engine's {name} signature against the certificate",
        ["openssl", "pkeyutl", "-verify", "-certin", "-inkey", str(k.cert_path), *opts,
         "-in", str(digest), "-sigfile", str(sig)],
    )  # fmt: skip
    assert "Signature Verified Successfully" in out.stdout


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_req_new_csr_signed_by_card_key(
    e2e_card: E2ECard, engine_env: dict[str, str], tmp_path: Path, key: str
) -> None:
    k: CardKey = getattr(e2e_card, key)
    csr = tmp_path / "req.csr"
    run(
        "openssl req -new with the card key",
        ["openssl", "req", "-new", *ENGINE, "-key", k.uri(pin=True), "-subj", f"/CN=csr {key}", "-out", str(csr)],
        env=engine_env,
    )
    verified = run("openssl req -verify of the CSR", ["openssl", "req", "-in", str(csr), "-verify", "-noout"])
    assert "verify OK" in verified.stdout + verified.stderr
    pub = run("openssl req -pubkey", ["openssl", "req", "-in", str(csr), "-pubkey", "-noout"]).stdout
    assert pub.strip() == k.public_pem.decode().strip(), (
        f"the CSR carries another public key than the card's {key}:\n{pub}"
    )


@pytest.mark.parametrize("version", ["tls1_2", "tls1_3"])
@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_s_client_auth(e2e_card: E2ECard, engine_env: dict[str, str], background: Any, version: str, key: str) -> None:
    k: CardKey = getattr(e2e_card, key)
    server, port = start_s_server(background, e2e_card, version)
    client = run(
        f"openssl s_client -{version} with the {key} card key",
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", f"-{version}", *ENGINE, "-key", k.uri(),
         "-pass", f"pass:{USER_PIN}", "-cert", str(k.cert_path), "-CAfile", str(e2e_card.ca_path),
         "-verify_return_error"],
        env=engine_env,
        input="",
        timeout=60,
    )  # fmt: skip
    server.wait_exit()
    assert_server_saw(server, k, f"openssl s_client {version}")
    assert ("TLSv1.3" if version == "tls1_3" else "TLSv1.2") in client.stdout, client.stdout
