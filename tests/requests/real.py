"""Helpers for tests against the real identity server (tests/server/idserver.py): a relying party's calls
(POST/GET /rp/v1/requests), cards activated from the server's links, and the independent check of a result
with `cryptography` (checks.py)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from cryptography import x509

from tests.conftest import USER_PIN, run_vsc
from tests.requests.checks import verify_jws
from tests.server.idserver import IdServer
from vsc_provider.provisioning import wire

DATA = b"Transfer 120.00 EUR to ACME, invoice 2026-118"


def new_rp(server: IdServer, name: str) -> str:
    """A relying party's API key (`vsc server rp create`)."""
    out = run_vsc("server", "rp", "create", "--data", str(server.data), "--name", name, "--json").stdout
    found = [v for v in json.loads(out).values() if isinstance(v, str) and v.startswith("vsc_rp_")]
    assert found, out
    return str(found[0])


def rp_call(server: IdServer, key: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    with server.client() as c:
        return c.call(method, path, body, headers={"Authorization": f"Bearer {key}"})


def activated(server: IdServer, profile: str = "default", env: dict[str, str] | None = None) -> tuple[str, str]:
    """A real card activated from a link of `server` (user, serial), in the current VSC_HOME (or env's)."""
    user = "u" + secrets.token_hex(4)
    out = run_vsc("activate", server.link(user, profile), "--pin", USER_PIN, "--json", env=env).stdout
    return user, str(json.loads(out)["serial"])


def create(server: IdServer, key: str, user: str, **body: Any) -> dict[str, Any]:
    return rp_call(server, key, "POST", "/rp/v1/requests", {"user": user, "ttl": 300, **body})


def sign_request(server: IdServer, key: str, user: str, data: bytes = DATA, **body: Any) -> str:
    """A sign request for `data` (ES256, a JWS), with one text item; its id."""
    items = [{"type": "text", "label": "Transfer", "data": "120.00 EUR to ACME"}]
    made = create(server, key, user, kind="sign", alg="ES256", data=wire.b64u(data), metadata=items, **body)
    return str(made["id"])


def result(server: IdServer, key: str, rid: str) -> dict[str, Any]:
    return rp_call(server, key, "GET", f"/rp/v1/requests/{rid}")


def wait_state(server: IdServer, key: str, rid: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
    """The RP's poll of `rid` once it is in `state` (AssertionError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = result(server, key, rid)
        if doc["state"] == state or time.monotonic() > deadline:
            assert doc["state"] == state, doc
            return doc
        time.sleep(0.05)


def assert_approved_jws(server: IdServer, key: str, rid: str, data: bytes = DATA) -> None:
    """The RP's poll says APPROVED and verified, and `cryptography` verifies the JWS against the certificate."""
    doc = result(server, key, rid)
    assert doc["state"] == "APPROVED" and doc["result"]["verified"] is True, doc
    cert = x509.load_der_x509_certificate(wire.unb64u(doc["result"]["certificate"]))
    header, payload = verify_jws(doc["result"]["signature"], cert.public_key())
    assert payload == data and header["vsc_request"] == rid
