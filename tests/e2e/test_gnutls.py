"""GnuTLS: p11tool lists the card's objects, gnutls-cli authenticates with TLS 1.3 using key and certificate by URI."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import USER_PIN, CardKey, E2ECard, assert_server_saw, require_tool, run, start_s_server


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool("p11tool", "gnutls-bin")
    require_tool("gnutls-cli", "gnutls-bin")


def test_p11tool_list_all(e2e_card: E2ECard) -> None:
    public = run(
        "p11tool --list-all (no login)",
        ["p11tool", "--provider", e2e_card.module, "--list-all", e2e_card.token_uri],
        env=e2e_card.env,
    ).stdout
    for k in e2e_card.keys:
        assert f"Label: {k.label}" in public, f"p11tool --list-all lacks {k.label}:\n{public}"
    assert "X.509 Certificate (RSA-2048)" in public, public
    assert "X.509 Certificate (EC/ECDSA-SECP256R1)" in public, public
    assert "Private key" not in public, f"p11tool saw private keys without login:\n{public}"

    private = run(
        "p11tool --login --list-all",
        ["p11tool", "--provider", e2e_card.module, "--login", "--list-all", e2e_card.token_uri],
        env={**e2e_card.env, "GNUTLS_PIN": USER_PIN},
    ).stdout
    assert "Private key (RSA-2048)" in private, f"p11tool --login --list-all:\n{private}"
    assert "Private key (EC/ECDSA-SECP256R1)" in private, f"p11tool --login --list-all:\n{private}"


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_gnutls_cli_tls13_client_auth(e2e_card: E2ECard, background: Any, key: str) -> None:
    k: CardKey = getattr(e2e_card, key)
    server, port = start_s_server(background, e2e_card, "tls1_3")
    client = run(
        f"gnutls-cli TLS 1.3 with the {key} key and certificate from the card",
        ["gnutls-cli", "--provider", e2e_card.module, "--x509keyfile", k.uri(), "--x509certfile", k.uri("cert"),
         "--x509cafile", str(e2e_card.ca_path), "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.3",
         "-p", str(port), "127.0.0.1"],
        env={**e2e_card.env, "GNUTLS_PIN": USER_PIN},
        input="",
    )  # fmt: skip
    assert "Handshake was completed" in client.stdout + client.stderr, client.stdout
    server.wait_exit()
    assert_server_saw(server, k, "gnutls-cli")
    assert "TLS_AES" in server.output(), f"not TLS 1.3:\n{server.output()}"
