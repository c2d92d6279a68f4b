"""The server alone: bad input gets a 4xx JSON error and stores nothing; concurrency; OpenAPI fuzzing."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.server.idserver import IdServer, light_request, software_csr, weak_device
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.provisioning.http import ServerError


def raw_post(server: IdServer, path: str, content: bytes) -> httpx.Response:
    with server.client() as c:
        return c._http.post(path, content=content, headers={"content-type": "application/json"})


def refused(server: IdServer, body: Any, path: str = "/v1/activate") -> ServerError:
    with server.client() as c, pytest.raises(ServerError) as info:
        c.call("POST", path, body)
    assert 400 <= info.value.status < 500 and info.value.error and info.value.detail
    return info.value


def resign(body: dict[str, Any], header_changes: dict[str, Any], signature: str | None = None) -> dict[str, Any]:
    header = json.loads(wire.unb64u(body["protected"]))
    header.update(header_changes)
    return {
        "protected": wire.b64u(json.dumps(header).encode()),
        "payload": body["payload"],
        "signature": signature or body["signature"],
    }


def test_bad_input_is_refused_with_json_and_changes_nothing(id_server: IdServer) -> None:
    link = id_server.link("mallory", "light")
    devices = len(id_server.devices())
    good, client = light_request(id_server, link)
    client.close()
    assert refused(id_server, resign(good, {"alg": "none"}, "")).error == "bad_alg"
    assert refused(id_server, resign(good, {"alg": "HS256"})).error == "bad_alg"
    assert refused(id_server, resign(good, {"nonce": "x"})).error == "bad_signature"  # header is signed
    assert refused(id_server, {"protected": "!", "payload": "", "signature": ""}).error == "malformed_jws"
    assert refused(id_server, [1, 2]).error == "malformed_jws"
    weak, c2 = light_request(id_server, link, device=weak_device())
    c2.close()
    assert refused(id_server, weak).error == "weak_key"
    other = DeviceKey.generate()
    forged = resign(good, {"jwk": other.public_jwk()})
    assert refused(id_server, forged).error == "bad_signature"
    unknown = DeviceKey.generate()
    with id_server.client() as c:
        kid_body = unknown.sign(id_server.url + "/v1/status", c.nonce(), {}, kid="no-such-device")
    assert refused(id_server, kid_body, "/v1/status").error == "unknown_key"
    # a CSR whose signature does not match its key
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(wire.unb64u(software_csr(key)))
    der[-5] ^= 0xFF
    bad_csr, c3 = light_request(id_server, link, keys=[{"id": "auth", "csr": wire.b64u(bytes(der))}])
    c3.close()
    assert refused(id_server, bad_csr).error in ("bad_csr_signature", "bad_csr")
    unknown_code, c4 = light_request(id_server, link, code="not-a-real-code-123")
    c4.close()
    assert refused(id_server, unknown_code).error == "unknown_code"
    assert raw_post(id_server, "/v1/activate", b"{" * 10).status_code == 400
    big = raw_post(id_server, "/v1/activate", b'{"a":"' + b"x" * (wire.MAX_BODY + 10) + b'"}')
    assert big.status_code == 413 and big.json()["error"] == "too_large"
    assert len(id_server.devices()) == devices
    # the good request still works once ... and its replay is refused
    with id_server.client() as c:
        assert c.call("POST", "/v1/activate", good)["device"]
    assert refused(id_server, good).error == "bad_nonce"
    assert len(id_server.devices()) == devices + 1


def _try_activate(server: IdServer, link: str) -> int:
    body, client = light_request(server, link)
    with client:
        try:
            client.call("POST", "/v1/activate", body)
            return 200
        except ServerError as exc:
            return exc.status


def test_fifty_concurrent_activations_of_distinct_links(id_server: IdServer) -> None:
    links = [id_server.link(f"user{i}", "light") for i in range(50)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda link: _try_activate(id_server, link), links, timeout=300))
    assert results == [200] * 50


def test_twenty_concurrent_uses_of_one_link_give_exactly_one_success(id_server: IdServer) -> None:
    link = id_server.link("once", "light")
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: _try_activate(id_server, link), range(20), timeout=300))
    assert results.count(200) == 1
    assert all(r in (404, 409) for r in results if r != 200)
    assert sum(d["user"] == "once" for d in id_server.devices()) == 1


def test_openapi_is_published_and_fuzzing_finds_no_server_error(id_server: IdServer) -> None:
    with id_server.client() as c:
        spec = c.call("GET", "/openapi.json")
    assert spec["openapi"].startswith("3.") and "/v1/activate" in spec["paths"]
    assert set(spec["paths"]["/v1/crl"]) == {"get"} and set(spec["paths"]["/v1/ocsp"]) == {"post"}
    result = id_server.fuzz(examples=30, timeout_s=10)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert f"{operations} selected / {operations} total" in result.stdout  # /v1/crl and /v1/ocsp among them


def test_every_route_is_in_the_openapi_description(tmp_path: Path) -> None:
    from vsc_provider.server.app import create_app
    from vsc_provider.server.openapi import SPEC
    from vsc_provider.server.state import IdentityServer

    umask = os.umask(0o077)  # the server sets its own; the test process keeps its
    try:
        server = IdentityServer(tmp_path / "data", ["127.0.0.1"])
        routes = {route.path for route in create_app(server).routes}  # type: ignore[attr-defined]
        server.db.close()
    finally:
        os.umask(umask)
    assert routes - {"/openapi.json"} == set(SPEC["paths"])
