"""A device answering requests with a real card, for the server's tests while the device side (the agent,
vsc_provider.requests) is written elsewhere: the card was activated against the real server by `vsc activate`;
this helper talks with the card's device key and signs with the card's keys through the card service."""

from __future__ import annotations

import datetime
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jwcrypto import jwk as jose_jwk

from tests.conftest import run_vsc
from tests.server.idserver import IdServer
from vsc_provider import api
from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism, PssParams
from vsc_provider.provisioning import cms, wire
from vsc_provider.provisioning import request_wire as rw
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.server import jose
from vsc_provider.token import service

MECHANISMS = {
    "RS256": Mechanism(C.CKM_SHA256_RSA_PKCS),
    "RS512": Mechanism(C.CKM_SHA512_RSA_PKCS),
    "PS256": Mechanism(C.CKM_SHA256_RSA_PKCS_PSS, PssParams(C.CKM_SHA256, C.CKG_MGF1_SHA256, 32)),
    "ES256": Mechanism(C.CKM_ECDSA_SHA256),
    "ES384": Mechanism(C.CKM_ECDSA_SHA384),
}


@dataclass
class Seen:
    """A request document as the device verified it."""

    token: str
    claims: dict[str, Any]
    display_hash: str


class CardDevice:
    def __init__(self, server: IdServer, serial: str, pin: str) -> None:
        self.server, self.serial, self.pin = server, serial, pin
        card = api.find_card(serial)
        self.binding = dict(card.record.server or {})
        self.device_id = str(self.binding["device"])
        self.device_key = DeviceKey.unseal(self.binding["device_key"], api.engine().device_key, serial)
        with server.client() as c:
            self.server_key = jose_jwk.JWK(**c.call("GET", "/v1/server")["jwks"]["keys"][0])

    def signed_body(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self.server.client() as c:
            return self.device_key.sign(self.server.url + path, c.nonce(), payload, kid=self.device_id)

    def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = self.signed_body(path, payload)
        with self.server.client() as c:
            return c.call("POST", path, body)

    def verify(self, token: str) -> Seen:
        """What the device checks before showing anything (docs/protocol.md)."""
        header = json.loads(wire.unb64u(token.split(".")[0]))
        assert header == {"alg": "RS256", "kid": self.server_key.thumbprint()}
        claims = jose.compact_claims(token, self.server_key, ("RS256",))
        assert claims["typ"] == rw.REQUEST_TYP and claims["iss"] == self.server.url
        assert claims["device"] == self.device_id and claims["exp"] > time.time()
        assert claims["iat"] <= time.time() + rw.IAT_SKEW
        return Seen(token, claims, rw.display_hash(wire.unb64u(token.split(".")[1])))

    def pending(self) -> list[Seen]:
        return [self.verify(t) for t in self.call("/v1/requests", {})["requests"]]

    def find(self, request_id: str) -> Seen:
        return next(s for s in self.pending() if s.claims["id"] == request_id)

    # --- the card --------------------------------------------------------------------------------

    def key_id(self, profile_key: str) -> bytes:
        return bytes.fromhex(next(k["key_id"] for k in self.binding["keys"] if k["id"] == profile_key))

    def certificate(self, profile_key: str) -> bytes:
        card = api.find_card(self.serial)
        want = self.key_id(profile_key)
        return bytes(
            next(
                o.attrs[C.CKA_VALUE]
                for o in card.objects.values()
                if o.klass == C.CKO_CERTIFICATE and o.attrs.get(C.CKA_ID) == want
            )
        )

    def card_sign(self, profile_key: str, alg: str, message: bytes) -> bytes:
        card = api.find_card(self.serial)
        with api.session(card, pin=self.pin):
            return service.sign(api.engine(), card, self.key_id(profile_key), MECHANISMS[alg], message)

    def result(self, seen: Seen) -> str:
        """The card's signature as the protocol wants it for this request."""
        c, key, alg = seen.claims, seen.claims["key"], seen.claims["alg"]
        if c["kind"] == "auth":
            protected = wire.b64u(json.dumps({"alg": alg}).encode())
            payload = wire.b64u(
                wire.canonical(
                    {
                        "typ": rw.AUTH_TYP,
                        "request": c["id"],
                        "challenge": c["challenge"],
                        "display_hash": seen.display_hash,
                        "aud": c["iss"],
                        "iat": int(time.time()),
                    }
                )
            )
        elif c["format"] == "jws":
            header = {"alg": alg, "vsc_request": c["id"], "vsc_display": seen.display_hash}
            protected, payload = wire.b64u(json.dumps(header).encode()), c["data"]
        else:
            hash_name = rw.ALG_HASH[alg]
            digest = wire.unb64u(c["hash"]) if "hash" in c else rw.digest(hash_name, wire.unb64u(c["data"]))
            attrs = cms.signed_attributes(digest, hash_name, datetime.datetime.now(datetime.UTC))
            signature = self.card_sign(key, alg, attrs)
            return wire.b64u(cms.signed_data(self.certificate(key), attrs, signature, hash_name, alg))
        signature = self.card_sign(key, alg, f"{protected}.{payload}".encode())
        return f"{protected}.{payload}.{wire.b64u(signature)}"

    def approval(self, seen: Seen, **changes: Any) -> dict[str, Any]:
        answer = {
            "id": seen.claims["id"],
            "display_hash": seen.display_hash,
            "decision": "approve",
            "signature": self.result(seen),
            "certificate": wire.b64u(self.certificate(seen.claims["key"])),
        }
        answer.update(changes)
        return answer


def activate(server: IdServer, user: str, pin: str) -> CardDevice:
    """A card activated for `user` by the real `vsc activate` (VSC_HOME names the store)."""
    out = run_vsc("activate", server.link(user), "--pin", pin, "--json")
    return CardDevice(server, json.loads(out.stdout)["serial"], pin)


@dataclass
class KeyDevice:
    """A device that is only a device key and its id at a server: enough for PushReader's signed body."""

    server: IdServer
    key: DeviceKey
    device_id: str

    def signed_body(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self.server.client() as c:
            return self.key.sign(self.server.url + path, c.nonce(), payload, kid=self.device_id)


class PushReader:
    """A /v1/push stream read in a thread: (arrival time, event, data) of each event, comments as ':'."""

    def __init__(self, device: CardDevice | KeyDevice, timeout: float = 60.0) -> None:
        self.events: queue.Queue[tuple[float, str, str]] = queue.Queue()
        self.ended = threading.Event()
        self._client = device.server.client()
        body = device.signed_body("/v1/push", {})
        self._ctx = self._client._http.stream("POST", "/v1/push", json=body, timeout=timeout)
        self.response = self._ctx.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event = ""
        try:
            for line in self.response.iter_lines():
                if line.startswith(":"):
                    self.events.put((time.perf_counter(), ":", line))
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    self.events.put((time.perf_counter(), event, line[6:]))
        except Exception:
            pass
        finally:
            self.ended.set()

    def next(self, name: str, timeout: float = 10.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while True:
            at, event, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event == name:
                return at, data

    def close(self) -> None:
        """End the stream: the connection is shut down at the socket (a copy of its descriptor), which wakes
        the reader thread; only once it is done is the TLS connection closed, never under a thread reading it."""
        sock = self.response.extensions["network_stream"].get_extra_info("socket")
        if sock is not None and not self.ended.is_set():
            with socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM) as raw:
                raw.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        try:
            self._ctx.__exit__(None, None, None)
        finally:
            self._client.close()


class Receiver(ThreadingHTTPServer):
    """An HTTP endpoint on 127.0.0.1 that keeps what is POSTed to it (callbacks, relay notifications)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.fail_first = fail_first
        self.got = threading.Event()

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                else:
                    outer.posts.append((self.path, body))
                    outer.got.set()
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"
