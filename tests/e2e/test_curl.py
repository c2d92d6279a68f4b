"""curl (built with OpenSSL here) authenticating to an HTTPS server with the card's key and certificate by pkcs11: URI.

curl hands pkcs11: URIs to OpenSSL's "pkcs11" engine (libp11); OPENSSL_CONF points OpenSSL at an engine
configuration naming the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    USER_PIN,
    CardKey,
    E2ECard,
    cert_sha256,
    openssl_engine_conf,
    require_tool,
    run,
    start_https_server,
)


@pytest.fixture(scope="module")
def curl_env(e2e_card: E2ECard, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_tool("curl", "curl")
    version = run("curl -V", ["curl", "-V"]).stdout
    if "OpenSSL" not in version:
        pytest.fail(f"this curl is not built with OpenSSL, the pkcs11: URI support tested here needs it:\n{version}")
    conf = openssl_engine_conf(e2e_card, tmp_path_factory.mktemp("curl") / "openssl.cnf")
    return {**e2e_card.env, "OPENSSL_CONF": str(conf)}


@pytest.mark.parametrize("cert_by", ["uri", "file"])
@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_curl_client_auth(
    e2e_card: E2ECard, curl_env: dict[str, str], background: Any, tmp_path: Path, key: str, cert_by: str
) -> None:
    k: CardKey = getattr(e2e_card, key)
    server, port = start_https_server(background, e2e_card)
    cert = k.uri("cert") if cert_by == "uri" else str(k.cert_path)
    result = run(
        f"curl with --key {key} by pkcs11: URI and --cert by {cert_by}",
        ["curl", "-sS", "--max-time", "30", "--cacert", str(e2e_card.ca_path),
         "--key", k.uri(), "--pass", USER_PIN, "--cert", cert, f"https://127.0.0.1:{port}/"],
        env=curl_env,
    )  # fmt: skip
    assert k.subject_cn in result.stdout, f"curl got a page without the card's subject:\n{result.stdout}"
    log = server.output()
    assert f"sha256={cert_sha256(k)}" in log, f"the HTTPS server did not see the card's certificate:\n{log}"
