"""Requests against the real server: relying-party auth, validation, create / poll / cancel / expiry, a real
card's answers (auth JWS, sign JWS, CMS) and their refusals, racing answers, SSE push, callbacks."""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from jwcrypto import jwk as jose_jwk

from tests.conftest import USER_PIN, run_vsc
from tests.server.idserver import IdServer
from tests.server.request_device import CardDevice, PushReader, Receiver, activate
from vsc_provider.provisioning import cms, wire
from vsc_provider.provisioning import request_wire as rw
from vsc_provider.provisioning.http import ServerError
from vsc_provider.server import jose

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def with_item(kind: str, data: str, label: str = "t") -> dict[str, Any]:
    """An auth request body with one metadata item."""
    return {"user": "u", "kind": "auth", "metadata": [{"type": kind, "label": label, "data": data}]}


@pytest.fixture(scope="module")
def device(id_server: IdServer, card_store: Path) -> CardDevice:
    return activate(id_server, "rq-alice", USER_PIN)


def new_rp(server: IdServer, name: str) -> str:
    out = run_vsc("server", "rp", "create", "--data", str(server.data), "--name", name, "--json")
    key = json.loads(out.stdout)["api_key"]
    assert key.startswith(rw.API_KEY_PREFIX)
    return str(key)


@pytest.fixture(scope="module")
def rp_key(id_server: IdServer) -> str:
    return new_rp(id_server, f"Shop {time.time_ns()}")


def rp(server: IdServer, key: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    with server.client() as c:
        return c.call(method, path, body, headers={"Authorization": f"Bearer {key}"})


def rp_refused(server: IdServer, key: str, method: str, path: str, body: Any = None) -> ServerError:
    with pytest.raises(ServerError) as info:
        rp(server, key, method, path, body)
    assert 400 <= info.value.status < 500, info.value
    return info.value


def test_relying_parties_authenticate_with_their_api_key(id_server: IdServer, rp_key: str) -> None:
    body = {"user": "nobody", "kind": "auth"}
    for key in ("x", "vsc_rp_wrong", json.loads((id_server.data / "admin.json").read_text())["token"]):
        err = rp_refused(id_server, key, "POST", "/rp/v1/requests", body)
        assert (err.status, err.error) == (401, "bad_api_key")
    assert rp_refused(id_server, rp_key, "POST", "/rp/v1/requests", body).error == "no_suitable_key"
    name = f"Twice {time.time_ns()}"
    new_rp(id_server, name)
    again = run_vsc("server", "rp", "create", "--data", str(id_server.data), "--name", name, check=False)
    assert again.returncode != 0 and "name_taken" in again.stderr
    stored = id_server.query("SELECT id, name, key_hash FROM relying_parties")
    assert len(stored) >= 2 and all(rp_key not in str(value) for row in stored for value in row)  # kept hashed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "auth"}, "user"),
        ({"user": "u", "device": "d", "kind": "auth"}, "user"),
        ({"user": "u", "kind": "login"}, "kind"),
        ({"user": "u", "kind": "auth", "colour": 1}, "colour"),
        ({"user": "u", "kind": "auth", "alg": "HS256"}, "alg"),
        ({"user": "u", "kind": "auth", "format": "cms"}, "format"),
        ({"user": "u", "kind": "auth", "data": "AA"}, "data"),
        ({"user": "u", "kind": "sign"}, "data"),
        ({"user": "u", "kind": "sign", "data": "AA", "hash": "AA"}, "data"),
        ({"user": "u", "kind": "sign", "data": "not base64!"}, "data"),
        ({"user": "u", "kind": "sign", "data": wire.b64u(b"x" * (rw.MAX_DATA + 1))}, "data"),
        ({"user": "u", "kind": "sign", "hash": wire.b64u(b"x" * 20), "format": "cms"}, "hash"),
        ({"user": "u", "kind": "sign", "hash": wire.b64u(b"x" * 32)}, "hash"),
        ({"user": "u", "kind": "auth", "ttl": 5}, "ttl"),
        ({"user": "u", "kind": "auth", "ttl": 86401}, "ttl"),
        ({"user": "u", "kind": "auth", "ttl": "60"}, "ttl"),
        ({"user": "u", "kind": "auth", "callback": "http://example.com/cb"}, "callback"),
        ({"user": "u", "kind": "auth", "callback": "ftp://127.0.0.1/"}, "callback"),
        ({"user": "u", "kind": "auth", "metadata": {}}, "metadata"),
        ({"user": "u", "kind": "auth", "metadata": [{"type": "text", "label": "t", "data": "x"}] * 9}, "metadata"),
        (with_item("video", ""), "metadata[0].type"),
        (with_item("text", "", "l" * 101), "metadata[0].label"),
        (with_item("text", "x" * 4097), "metadata[0].data"),
        (with_item("raw", wire.b64u(b"r" * 65537)), "metadata[0].data"),
        (with_item("image", wire.b64u(b"GIF00a")), "metadata[0].data"),
        (with_item("pdf", wire.b64u(PNG)), "metadata[0].data"),
        ({"user": "u", "kind": "auth", "metadata": [{"type": "text", "label": "t"}]}, "metadata[0]"),
    ],
)  # fmt: skip
def test_bad_fields_are_400_naming_the_field(id_server: IdServer, rp_key: str, body: Any, field: str) -> None:
    err = rp_refused(id_server, rp_key, "POST", "/rp/v1/requests", body)
    assert (err.status, err.error, err.body.get("field")) == (400, "bad_field", field), err.body


def test_body_limits(id_server: IdServer, rp_key: str, device: CardDevice) -> None:
    headers = {"Authorization": f"Bearer {rp_key}"}
    with id_server.client() as c:
        big = c._http.post("/rp/v1/requests", content=b"{" + b" " * (rw.MAX_RP_BODY + 1) + b"}", headers=headers)
        assert big.status_code == 413 and big.json()["error"] == "too_large"
        # a 2 MiB PDF is within the relying party's limit (the device calls keep 256 KiB)
        pdf = b"%PDF-1.4\n" + b"0" * (2 * 1024 * 1024 - 9)
        body = {
            "user": "rq-alice",
            "kind": "auth",
            "metadata": [{"type": "pdf", "label": "contract", "data": wire.b64u(pdf)}],
        }
        ok = c._http.post("/rp/v1/requests", json=body, headers=headers)
        assert ok.status_code == 201, ok.text
        rp(id_server, rp_key, "POST", f"/rp/v1/requests/{ok.json()['id']}/cancel")
        assert c._http.post("/v1/requests", content=b"{" + b" " * 300_000 + b"}").status_code == 413


def test_create_poll_cancel_and_expiry(id_server: IdServer, rp_key: str, device: CardDevice) -> None:
    receiver = Receiver()
    reader = PushReader(device)
    try:
        made = cancelled_and_expired(id_server, rp_key, device, receiver)
        while reader.next("gone", timeout=10)[1] != made:  # the cancelled one's comes first
            pass
    finally:
        reader.close()
        receiver.shutdown()


def cancelled_and_expired(id_server: IdServer, rp_key: str, device: CardDevice, receiver: Receiver) -> str:
    body = {"user": "rq-alice", "kind": "auth", "ttl": 10, "callback": receiver.url + "/expired"}
    made = rp(id_server, rp_key, "POST", "/rp/v1/requests", body)
    assert made["state"] == "PENDING" and len(wire.unb64u(made["challenge"])) == 32
    doc = rp(id_server, rp_key, "GET", f"/rp/v1/requests/{made['id']}")
    assert (doc["state"], doc["kind"], doc["alg"], doc["format"]) == ("PENDING", "auth", "RS256", "jws")
    assert "result" not in doc
    other = new_rp(id_server, f"Other {time.time_ns()}")
    assert rp_refused(id_server, other, "GET", f"/rp/v1/requests/{made['id']}").error == "unknown_request"
    assert rp_refused(id_server, other, "POST", f"/rp/v1/requests/{made['id']}/cancel").status == 404
    assert rp_refused(id_server, rp_key, "GET", "/rp/v1/requests/nope").status == 404
    assert made["id"] in [s.claims["id"] for s in device.pending()]

    body = {"user": "rq-alice", "kind": "auth", "callback": receiver.url + "/cancelled"}
    second = rp(id_server, rp_key, "POST", "/rp/v1/requests", body)
    cancelled = rp(id_server, rp_key, "POST", f"/rp/v1/requests/{second['id']}/cancel")
    assert cancelled["state"] == "CANCELLED"
    assert receiver.got.wait(10)
    states = [(path, jose.unverified_claims(posted["result"])["state"]) for path, posted in receiver.posts]
    assert states == [("/cancelled", "CANCELLED")]
    assert rp_refused(id_server, rp_key, "POST", f"/rp/v1/requests/{second['id']}/cancel").error == "not_pending"
    assert second["id"] not in [s.claims["id"] for s in device.pending()]

    deadline = made["expires"] + 3
    listed = lambda: [jose.unverified_claims(t)["id"] for t in device.call("/v1/requests", {})["requests"]]  # noqa: E731
    while time.time() < deadline and made["id"] in listed():
        time.sleep(0.5)
    assert rp(id_server, rp_key, "GET", f"/rp/v1/requests/{made['id']}")["state"] == "EXPIRED"
    assert rp_refused(id_server, rp_key, "POST", f"/rp/v1/requests/{made['id']}/cancel").error == "not_pending"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(receiver.posts) < 2:
        time.sleep(0.1)
    path, posted = receiver.posts[1]
    assert (path, jose.unverified_claims(posted["result"])["state"]) == ("/expired", "EXPIRED")
    return str(made["id"])


def verify_jws_independently(token: str, cert_der: bytes, alg: str) -> dict[str, Any]:
    protected, payload, signature = token.split(".")
    public = x509.load_der_x509_certificate(cert_der).public_key()
    h = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[rw.ALG_HASH[alg]]
    signed, sig = f"{protected}.{payload}".encode(), wire.unb64u(signature)
    if alg.startswith("RS"):
        public.verify(sig, signed, padding.PKCS1v15(), h)  # type: ignore[union-attr, call-arg]
    elif alg == "PS256":
        public.verify(sig, signed, padding.PSS(padding.MGF1(h), 32), h)  # type: ignore[union-attr, call-arg]
    else:
        n = len(sig) // 2
        der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
        public.verify(der, signed, ec.ECDSA(h))  # type: ignore[union-attr, call-arg]
    return {"header": json.loads(wire.unb64u(protected)), "payload": wire.unb64u(payload)}


@pytest.mark.parametrize(
    ("body", "key", "alg"),
    [
        ({"kind": "auth"}, "auth", "RS256"),
        ({"kind": "sign", "data": wire.b64u(b"pay 10 EUR")}, "sign", "ES256"),
        ({"kind": "sign", "data": wire.b64u(b"pay 20 EUR"), "alg": "RS512"}, "auth", "RS512"),
        ({"kind": "sign", "data": wire.b64u(b"pay 30 EUR"), "format": "cms"}, "sign", "ES256"),
        ({"kind": "sign", "hash": wire.b64u(rw.digest("sha256", b"doc")), "format": "cms", "alg": "PS256"},
         "auth", "PS256"),
    ],
)  # fmt: skip
def test_a_card_approves_and_the_relying_party_gets_a_verified_result(
    id_server: IdServer, rp_key: str, device: CardDevice, body: dict[str, Any], key: str, alg: str
) -> None:
    metadata = [
        {"type": "text", "label": "what", "data": "approve?"},
        {"type": "image", "label": "logo", "data": wire.b64u(PNG)},
    ]
    made = rp(id_server, rp_key, "POST", "/rp/v1/requests", {"user": "rq-alice", **body, "metadata": metadata})
    seen = device.find(made["id"])
    assert (seen.claims["key"], seen.claims["alg"]) == (key, alg)
    assert seen.claims["metadata"] == metadata and seen.claims["rp"]["name"].startswith("Shop ")
    assert seen.claims["branding"]["name"] and seen.claims["branding"]["colour"].startswith("#")
    answer = device.call("/v1/requests/answer", device.approval(seen))
    assert answer == {"id": made["id"], "state": "APPROVED"}
    doc = rp(id_server, rp_key, "GET", f"/rp/v1/requests/{made['id']}")
    assert (doc["state"], doc["device"], doc["result"]["verified"]) == ("APPROVED", device.device_id, True)
    cert = wire.unb64u(doc["result"]["certificate"])
    assert cert == device.certificate(key)
    signature = doc["result"]["signature"]
    if body["kind"] == "auth":
        claims = json.loads(verify_jws_independently(signature, cert, alg)["payload"])
        assert claims["challenge"] == made["challenge"] and claims["display_hash"] == seen.display_hash
    elif body.get("format") == "cms":
        digest = wire.unb64u(body["hash"]) if "hash" in body else rw.digest(rw.ALG_HASH[alg], wire.unb64u(body["data"]))
        assert cms.verify_signed_data(wire.unb64u(signature), digest, rw.ALG_HASH[alg]) == cert
    else:
        parts = verify_jws_independently(signature, cert, alg)
        assert parts["payload"] == wire.unb64u(body["data"])
        assert parts["header"]["vsc_request"] == made["id"]
    again = device.approval(seen)
    with pytest.raises(ServerError) as info:
        device.call("/v1/requests/answer", again)
    assert (info.value.status, info.value.error) == (409, "not_pending")


def test_wrong_answers_are_refused_and_change_nothing(id_server: IdServer, rp_key: str, device: CardDevice) -> None:
    made = rp(
        id_server, rp_key, "POST", "/rp/v1/requests", {"user": "rq-alice", "kind": "sign", "data": wire.b64u(b"x")}
    )
    seen = device.find(made["id"])
    good = device.approval(seen)
    sig = good["signature"].split(".")
    flipped = wire.b64u(bytes([wire.unb64u(sig[2])[0] ^ 1]) + wire.unb64u(sig[2])[1:])
    wrong = {
        "display_hash": ({"display_hash": rw.display_hash(b"something else")}, 409, "display_mismatch"),
        "tampered signature": ({"signature": f"{sig[0]}.{sig[1]}.{flipped}"}, 400, "bad_result"),
        "other data": ({"signature": f"{sig[0]}.{wire.b64u(b'y')}.{sig[2]}"}, 400, "bad_result"),
        "other certificate": ({"certificate": wire.b64u(device.certificate("auth"))}, 400, "bad_result"),
        "CA certificate": ({"certificate": wire.b64u((id_server.data / "ca.pem").read_bytes())}, 400, "bad_result"),
        "no signature": ({"signature": None}, 400, "bad_result"),
        "unknown id": ({"id": "nope"}, 404, "unknown_request"),
    }
    for name, (changes, status, error) in wrong.items():
        with pytest.raises(ServerError) as info:
            device.call("/v1/requests/answer", {**good, **changes})
        assert (info.value.status, info.value.error) == (status, error), name
        assert rp(id_server, rp_key, "GET", f"/rp/v1/requests/{made['id']}")["state"] == "PENDING"
    rejected = device.call(
        "/v1/requests/answer", {"id": made["id"], "display_hash": seen.display_hash, "decision": "reject"}
    )
    assert rejected["state"] == "REJECTED"
    assert rp(id_server, rp_key, "GET", f"/rp/v1/requests/{made['id']}")["state"] == "REJECTED"


def test_a_cms_signed_with_another_alg_than_asked_is_refused(
    id_server: IdServer, rp_key: str, device: CardDevice
) -> None:
    body = {"user": "rq-alice", "kind": "sign", "data": wire.b64u(b"x"), "format": "cms", "alg": "PS256"}
    made = rp(id_server, rp_key, "POST", "/rp/v1/requests", body)
    seen = device.find(made["id"])
    pkcs1 = dataclasses.replace(seen, claims={**seen.claims, "alg": "RS256"})
    with pytest.raises(ServerError) as info:
        device.call("/v1/requests/answer", device.approval(seen, signature=device.result(pkcs1)))
    assert (info.value.status, info.value.error) == (400, "bad_result")
    assert device.call("/v1/requests/answer", device.approval(seen))["state"] == "APPROVED"


def test_racing_answers_exactly_one_wins(id_server: IdServer, rp_key: str, device: CardDevice) -> None:
    made = rp(id_server, rp_key, "POST", "/rp/v1/requests", {"user": "rq-alice", "kind": "auth"})
    seen = device.find(made["id"])
    approval = device.approval(seen)
    reject = {"id": made["id"], "display_hash": seen.display_hash, "decision": "reject"}
    bodies = [device.signed_body("/v1/requests/answer", approval if n % 2 else reject) for n in range(8)]
    start = threading.Barrier(len(bodies))

    def send(body: dict[str, Any]) -> int:
        with id_server.client() as c:
            start.wait()
            return c._http.post("/v1/requests/answer", json=body).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(send, bodies))
    assert statuses.count(200) == 1 and statuses.count(409) == len(bodies) - 1, statuses
    assert rp(id_server, rp_key, "GET", f"/rp/v1/requests/{made['id']}")["state"] in ("APPROVED", "REJECTED")


def test_push_delivers_pending_new_and_gone_events(
    id_server: IdServer, rp_key: str, device: CardDevice, record_property: Any
) -> None:
    waiting = rp(id_server, rp_key, "POST", "/rp/v1/requests", {"user": "rq-alice", "kind": "auth"})
    reader = PushReader(device)
    try:
        assert reader.response.status_code == 200
        assert reader.response.headers["content-type"].startswith("text/event-stream")
        _, first = reader.next("request")
        pending_ids = {device.verify(first).claims["id"]}
        while waiting["id"] not in pending_ids:
            pending_ids.add(device.verify(reader.next("request")[1]).claims["id"])
        latencies = []
        for _ in range(20):
            with id_server.client() as c:
                c.call("GET", "/v1/server")  # connection warm, as a relying party's would be
                started = time.perf_counter()
                made = c.call("POST", "/rp/v1/requests", {"user": "rq-alice", "kind": "auth"},
                              headers={"Authorization": f"Bearer {rp_key}"})  # fmt: skip
            at, token = reader.next("request")
            assert device.verify(token).claims["id"] == made["id"]
            latencies.append((at - started) * 1000)
            rp(id_server, rp_key, "POST", f"/rp/v1/requests/{made['id']}/cancel")
            assert reader.next("gone")[1] == made["id"]
        latencies.sort()
        median, p99 = statistics.median(latencies), latencies[-1]
        record_property("push_create_to_event_ms", {"median": median, "max": p99})
        print(f"push latency create->event over 20 on loopback: median {median:.1f} ms, max {p99:.1f} ms")
        assert median < 200
        rp(id_server, rp_key, "POST", f"/rp/v1/requests/{waiting['id']}/cancel")
        assert reader.next("gone")[1] == waiting["id"]
    finally:
        reader.close()


def test_callbacks_carry_the_document_signed_by_the_protocol_key(
    id_server: IdServer, rp_key: str, device: CardDevice
) -> None:
    receiver = Receiver(fail_first=1)  # the first try fails: the server tries again
    try:
        body = {"user": "rq-alice", "kind": "auth", "callback": receiver.url + "/done?x=1"}
        made = rp(id_server, rp_key, "POST", "/rp/v1/requests", body)
        device.call("/v1/requests/answer", device.approval(device.find(made["id"])))
        assert receiver.got.wait(15)
        path, posted = receiver.posts[0]
        assert path == "/done?x=1"
        with id_server.client() as c:
            server_key = jose_jwk.JWK(**c.call("GET", "/v1/server")["jwks"]["keys"][0])
        header = json.loads(wire.unb64u(posted["result"].split(".")[0]))
        assert header == {"alg": "RS256", "kid": server_key.thumbprint()}
        doc = jose.compact_claims(posted["result"], server_key, ("RS256",))
        assert (doc["id"], doc["state"], doc["result"]["verified"]) == (made["id"], "APPROVED", True)
        assert doc == rp(id_server, rp_key, "GET", f"/rp/v1/requests/{made['id']}")
    finally:
        receiver.shutdown()


def test_admin_cli_creates_and_shows_requests(id_server: IdServer, device: CardDevice, tmp_path: Path) -> None:
    (tmp_path / "contract.txt").write_bytes(b"I agree")
    (tmp_path / "logo.png").write_bytes(PNG)
    out = run_vsc("server", "request", "create", "--data", str(id_server.data), "--user", "rq-alice", "--kind", "sign",
                  "--text", "Sign the contract?", "--image", str(tmp_path / "logo.png"),
                  "--sign-file", str(tmp_path / "contract.txt"), "--ttl", "120", "--json")  # fmt: skip
    made = json.loads(out.stdout)
    show = ("server", "request", "show", "--data", str(id_server.data), "--json", "--")  # an id may start with '-'
    seen = device.find(made["id"])
    assert seen.claims["rp"] == {"name": "admin"} and wire.unb64u(seen.claims["data"]) == b"I agree"
    assert [m["type"] for m in seen.claims["metadata"]] == ["text", "image"]
    shown = json.loads(run_vsc(*show, made["id"]).stdout)
    assert shown["state"] == "PENDING" and "verified" not in shown
    device.call("/v1/requests/answer", device.approval(seen))
    shown = json.loads(run_vsc(*show, made["id"]).stdout)
    assert (shown["state"], shown["verified"]) == ("APPROVED", True)
    assert wire.unb64u(shown["certificate"]) == device.certificate("sign")
    verify_jws_independently(shown["signature"], device.certificate("sign"), "ES256")
    plain = run_vsc(
        "server", "request", "create", "--data", str(id_server.data), "--user", "rq-alice", "--kind", "auth"
    )
    assert len(plain.stdout.strip()) > 10
    bad = run_vsc("server", "request", "create", "--data", str(id_server.data), "--user", "rq-alice", "--kind", "sign",
                  check=False)  # fmt: skip
    assert bad.returncode != 0 and "--sign-file" in bad.stderr


def test_push_streams_are_bounded_per_device_and_leave_the_server_free(
    id_server: IdServer, rp_key: str, device: CardDevice
) -> None:
    from vsc_provider.server.push import MAX_PER_DEVICE

    readers = [PushReader(device) for _ in range(MAX_PER_DEVICE)]
    try:
        assert all(r.response.status_code == 200 for r in readers)
        with id_server.client() as c:
            refused = c._http.post("/v1/push", json=device.signed_body("/v1/push", {}))
            assert refused.status_code == 429 and refused.json()["error"] == "too_many_streams"
            assert "Retry-After" in refused.headers
            started = time.perf_counter()
            made = c.call("POST", "/rp/v1/requests", {"user": "rq-alice", "kind": "auth"},
                          headers={"Authorization": f"Bearer {rp_key}"})  # fmt: skip
            assert time.perf_counter() - started < 10  # not held up by the full streams (they are not waited on)
        for reader in readers:  # every open stream gets the new request
            while device.verify(reader.next("request")[1]).claims["id"] != made["id"]:
                pass
        rp(id_server, rp_key, "POST", f"/rp/v1/requests/{made['id']}/cancel")
    finally:
        for reader in readers:
            reader.close()
    time.sleep(0.5)  # the server notices the closed streams
    again = PushReader(device)
    try:
        assert again.response.status_code == 200
    finally:
        again.close()


def test_fuzzing_the_relying_party_api_with_a_valid_key_finds_no_server_error(
    id_server: IdServer, rp_key: str, device: CardDevice
) -> None:
    auth = f"Authorization: Bearer {rp_key}"
    result = id_server.fuzz("--include-path-regex", "^/rp/", "-H", auth, examples=60, timeout_s=20)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ids_never_start_with_a_dash_that_a_command_line_would_read_as_an_option() -> None:
    from vsc_provider.server.ids import typed_id

    ids = [typed_id() for _ in range(2000)]  # without the rule about 31 of them would start with '-'
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == 2000 and {len(i) for i in ids} == {22}
