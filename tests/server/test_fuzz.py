"""Whatever a client sends, the server answers 4xx with a JSON error, never a 5xx: arbitrary JSON bodies,
JSON nested deeper than the protocol uses, lone surrogates, and correctly signed requests whose header
fields and payloads have the wrong types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.server.idserver import IdServer, light_request, software_csr
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.server.app import DEVICE_CALLS

POSTS = sorted(DEVICE_CALLS)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
)
# values found to break type assumptions: ids as lists or objects, surrogates, huge numbers
ODD = st.sampled_from([[], {}, ["x"], {"a": 1}, "\ud800", "a\udfff", 10**40, -1, 1.5, True, None, ""]) | JSON
FIELDS = [
    "code",
    "ticket",
    "proof",
    "keys",
    "pin_verifier",
    "attestation",
    "target",
    "target_key",
    "receipt",
    "renewal",
    "tpm_key",
    "tpm_attestation",
]
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def raw_post(server: IdServer, path: str, content: bytes) -> tuple[int, Any]:
    with server.client() as c:
        response = c._http.post(path, content=content, headers={"Content-Type": "application/json"})
    return response.status_code, response.json()


def assert_refused(status: int, body: Any) -> None:
    assert 400 <= status < 500, body
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body


@pytest.fixture(scope="module")
def registered(id_server: IdServer) -> tuple[DeviceKey, str]:
    device = DeviceKey.generate()
    key = ec.generate_private_key(ec.SECP256R1())
    body, client = light_request(
        id_server, id_server.link("fuzz", "light"), device=device, keys=[{"id": "auth", "csr": software_csr(key)}]
    )
    with client:
        return device, str(client.call("POST", "/v1/activate", body)["device"])


def server_log(server: IdServer) -> str:
    return (server.data.parent / f"{server.data.name}.log").read_text(errors="replace")


@pytest.mark.parametrize("path", POSTS)
def test_malformed_bodies_are_refused(id_server: IdServer, path: str) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    nested_object = b'{"a":' * 3000 + b"1" + b"}" * 3000
    bodies = (deep, nested_object, b'{"code": "\\ud800abcdefgh"}', b'{"\\udfff": 1}', b"\xff\xfe", b"")
    before = server_log(id_server)
    for content in bodies:
        assert_refused(*raw_post(id_server, path, content))
    grown = server_log(id_server)[len(before) :]
    assert len(grown.splitlines()) <= len(bodies) and "Traceback" not in grown, grown[-3000:]


@pytest.mark.parametrize("path", POSTS)
@FUZZ
@given(body=JSON)
def test_any_json_body_is_refused_cleanly(id_server: IdServer, path: str, body: Any) -> None:
    status, answer = raw_post(id_server, path, json.dumps(body).encode())
    assert status < 500, answer


@pytest.mark.parametrize("path", POSTS)
@FUZZ
@given(payload=st.dictionaries(st.sampled_from(FIELDS), ODD))
def test_signed_payloads_of_any_shape_get_4xx(
    id_server: IdServer, registered: tuple[DeviceKey, str], path: str, payload: dict[str, Any]
) -> None:
    device, device_id = registered
    with id_server.client() as c:
        nonce = c.nonce()
    # /v1/activate is signed with a new key (jwk), every other call with the registered one (kid)
    body = device.sign(id_server.url + path, nonce, payload, kid=None if path == "/v1/activate" else device_id)
    status, answer = raw_post(id_server, path, json.dumps(body).encode())
    assert status < 500, answer


@FUZZ
@given(field=st.sampled_from(["kid", "nonce", "url", "jwk", "alg"]), value=ODD)
def test_signed_headers_of_any_shape_get_4xx(
    id_server: IdServer, registered: tuple[DeviceKey, str], field: str, value: Any
) -> None:
    device, device_id = registered
    with id_server.client() as c:
        nonce = c.nonce()
    body = device.sign(id_server.url + "/v1/status", nonce, {}, kid=device_id)
    header = json.loads(wire.unb64u(body["protected"]))
    header[field] = value
    body["protected"] = wire.b64u(json.dumps(header).encode())
    status, answer = raw_post(id_server, "/v1/status", json.dumps(body).encode())
    assert_refused(status, answer)


@FUZZ
@given(body=st.fixed_dictionaries({"user": st.just("bob")}, optional={"profile": ODD}) | JSON)
@example(body={"user": "bob", "profile": ["default"]})
@example(body={"user": "bob", "profile": {"a": 1}})
def test_admin_bodies_of_any_shape_get_4xx(id_server: IdServer, body: Any) -> None:
    token = json.loads((id_server.data / "admin.json").read_text())["token"]
    with id_server.client() as c:
        response = c._http.post(
            "/admin/activations", content=json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code < 500, response.text


def test_fuzzing_the_admin_api_with_the_admin_token_finds_no_server_error(id_server: IdServer) -> None:
    token = json.loads((id_server.data / "admin.json").read_text())["token"]
    before = server_log(id_server)
    result = id_server.fuzz(
        "--include-path-regex", "^/admin/", "-H", f"Authorization: Bearer {token}", examples=60, timeout_s=20
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Authentication failed" not in result.stdout  # the token was taken: the handlers were reached
    assert "Traceback" not in server_log(id_server)[len(before) :]
