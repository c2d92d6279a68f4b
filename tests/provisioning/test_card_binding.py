"""`vsc card show --json` on a card activated from the real server: the binding (server, user, profile,
device), the server's usage of each key, each key as a JWK and PEM, and nothing secret from the binding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import USER_PIN, run_vsc
from tests.server.idserver import IdServer
from vsc_provider import api

SECRET_FIELDS = {"device_key", "pin_salt", "secret", "link", "offer", "made", "cert", "pin", "pid", "mac"}


def walk(value: Any) -> list[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a JSON document."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in [(k, v), *walk(v)]]
    if isinstance(value, list):
        return [pair for item in value for pair in walk(item)]
    return []


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_card_show_json_has_the_binding_and_keys_but_no_secrets(id_server: IdServer, vsc_home: Path) -> None:
    before = {d["id"] for d in id_server.devices()}
    activated = json.loads(run_vsc("activate", id_server.link("bob"), "--pin", USER_PIN, "--json").stdout)
    serial = activated["serial"]
    shown = json.loads(run_vsc("card", "show", serial, "--json").stdout)
    (device,) = [d for d in id_server.devices() if d["id"] not in before]
    binding = shown["binding"]
    assert binding["server"] == id_server.url
    assert binding["user"] == "bob" and binding["profile"] == "default"
    assert binding["device"] == device["id"]
    assert binding["state"] == "active"

    stored = api.find_card(serial).record.server or {}
    assert shown["device_key"] in ("tpm", "keyring", "file")  # the name of the card's device-key back end, not a key
    assert {k for k, _ in walk({k: v for k, v in shown.items() if k != "device_key"})} & SECRET_FIELDS == set()
    text = json.dumps(shown)
    for field in ("device_key", "pin_salt", "cert", "mac"):
        assert str(stored[field]) not in text, field

    # Every key the server issued is listed with its usage, as a JWK and a PEM matching its certificate.
    issued = {k["key_id"]: k["usage"] for k in stored["keys"]}
    assert issued and {k["key_id"] for k in binding["keys"]} == set(issued)
    keys = {k["id"]: k for k in shown["keys"]}
    for key_id, usage in issued.items():
        entry = keys[key_id]
        assert entry["server_usage"] == usage
        assert entry["jwk"]["kid"] == key_id
        cert_pem = run_vsc("cert", "export", "--card", serial, key_id).stdout.encode()
        cert_key = x509.load_pem_x509_certificate(cert_pem).public_key()
        assert serialization.load_pem_public_key(entry["pem"].encode()) == cert_key
        jwk_out = json.loads(run_vsc("key", "export-public", serial, key_id, "--format", "jwk").stdout)
        assert jwk_out == entry["jwk"]
