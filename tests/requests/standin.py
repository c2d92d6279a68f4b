"""A misbehaving identity server for the device's tests: the device-side request routes (GET /v1/server,
GET /v1/nonce, POST /v1/requests, /v1/requests/answer, /v1/push) as docs/protocol.md ("Requests") describes
them, steerable where the real server never goes wrong: refuse push connections (the backoff test), end
streams early, serve forged or tampered documents and expired requests, refuse good answers, change its
protocol key, bind cards whose keys want the PIN per signature, answer a renewal (POST /v1/renew) with a
malformed document. Every other test of the device runs against
the real identity server (tests/server/idserver.py).

It runs in the test process (uvicorn in a thread, TLS on 127.0.0.1). Answers are checked independently
(checks.py). Cards are bound to it directly (bind_card): keys made on a real card, certified by its own CA.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.requests.checks import verify_jws
from tests.server.idserver import free_port
from vsc_provider import api
from vsc_provider.ck import constants as C
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.provisioning.http import cert_pin
from vsc_provider.token import service


def make_cert(subject: str, issuer: str, signer: Any, public: Any, ca: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if subject == "127.0.0.1":
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


@dataclass
class Stored:
    jws: str
    device: str
    claims: dict[str, Any]
    display_hash: str
    state: str = "PENDING"
    result: dict[str, Any] | None = None


@dataclass
class StandIn:
    workdir: Path
    protocol_key: jose_jwk.JWK = field(default_factory=lambda: jose_jwk.JWK.generate(kty="RSA", size=2048))
    ca_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # device id -> public JWK
    requests: dict[str, Stored] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    push_attempts: list[float] = field(default_factory=list)  # time.monotonic() of each POST /v1/push
    refuse_pushes: int = 0  # so many /v1/push calls answer 503 first
    stream_seconds: float | None = None  # push streams end after this long
    serve_expired: bool = False  # list expired requests too (a misbehaving server)
    extra_jws: list[str] = field(default_factory=list)  # served as they are (bad requests)
    refuse_answer: tuple[int, str] | None = None
    renew_answer: dict[str, Any] | None = None  # what POST /v1/renew answers (404 while None)
    renewals: int = 0  # POST /v1/renew calls
    closing: bool = False
    url: str = ""
    pin: str = ""
    cert_der: bytes = b""
    _servers: list[tuple[uvicorn.Server, threading.Thread]] = field(default_factory=list)

    # --- requests ---------------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        public = self.protocol_key.export_public(as_dict=True)
        return {"keys": [{**public, "kid": self.protocol_key.thumbprint()}]}

    def sign_request(self, claims: dict[str, Any], key: jose_jwk.JWK | None = None) -> str:
        key = key or self.protocol_key
        token = jose_jws.JWS(wire.canonical(claims))
        token.add_signature(key, alg="RS256", protected=json.dumps({"alg": "RS256", "kid": key.thumbprint()}))
        return str(token.serialize(compact=True))

    def claims(self, device: str, kind: str = "sign", alg: str = "ES256", **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "typ": "vsc-request",
            "id": "r" + secrets.token_hex(6),
            "iss": self.url,
            "device": device,
            "kind": kind,
            "rp": {"name": "Shop"},
            "key": "sign" if kind == "sign" else "auth",
            "alg": alg,
            "metadata": [{"type": "text", "label": "Order", "data": "Pay 12.50 EUR to Shop"}],
            "branding": {"name": "Test IdP", "colour": "#112233"},
            "iat": now,
            "exp": now + 300,
        }
        if kind == "auth":
            claims["challenge"] = wire.b64u(secrets.token_bytes(32))
        else:
            claims["format"] = "jws"
            claims["data"] = wire.b64u(b"the document to sign")
        claims.update(extra)
        return claims

    def add(self, claims: dict[str, Any], key: jose_jwk.JWK | None = None) -> str:
        """A request for a device, signed by the protocol key (or `key`); its id."""
        compact = self.sign_request(claims, key)
        payload = wire.unb64u(compact.split(".")[1])
        display = wire.b64u(hashlib.sha256(payload).digest())
        self.requests[claims["id"]] = Stored(compact, claims["device"], claims, display)
        return str(claims["id"])

    def make(self, device: str, kind: str = "sign", alg: str = "ES256", **extra: Any) -> str:
        return self.add(self.claims(device, kind, alg, **extra))

    def _listed(self, device: str) -> list[str]:
        now = time.time()
        live = [
            s.jws
            for s in self.requests.values()
            if s.device == device and s.state == "PENDING" and (self.serve_expired or s.claims["exp"] > now)
        ]
        return live + self.extra_jws

    # --- device calls ------------------------------------------------------------------------------

    def _device_payload(self, body: Any, path: str) -> tuple[str, dict[str, Any]]:
        header = json.loads(wire.unb64u(body["protected"]))
        device = header["kid"]
        assert header["url"] == self.url + path, header["url"]
        assert header["nonce"] in self.nonces
        self.nonces.discard(header["nonce"])
        token = jose_jws.JWS()
        token.deserialize(json.dumps(body))
        token.verify(jose_jwk.JWK(**self.devices[device]))
        return device, json.loads(token.payload)

    def _check_result(self, stored: Stored, answer: dict[str, Any]) -> bool:
        """The answer's signature verified with the certificate it names (JWS kinds; CMS is the server's)."""
        cert = x509.load_der_x509_certificate(wire.unb64u(answer["certificate"]))
        if stored.claims.get("format") == "cms":
            return False
        header, payload = verify_jws(answer["signature"], cert.public_key())
        if stored.claims["kind"] == "auth":
            claims = json.loads(payload)
            return bool(
                claims["typ"] == "vsc-auth"
                and claims["request"] == stored.claims["id"]
                and claims["challenge"] == stored.claims["challenge"]
                and claims["display_hash"] == stored.display_hash
                and claims["aud"] == self.url
            )
        return bool(
            header["vsc_request"] == stored.claims["id"]
            and header["vsc_display"] == stored.display_hash
            and payload == wire.unb64u(stored.claims["data"])
        )

    async def _server(self, request: Request) -> Response:
        return JSONResponse({"protocol": 1, "jwks": self.jwks()})

    async def _nonce(self, request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        self.nonces.add(nonce)
        return JSONResponse({"nonce": nonce})

    async def _requests(self, request: Request) -> Response:
        device, _ = self._device_payload(await request.json(), "/v1/requests")
        answer: dict[str, Any] = {"requests": self._listed(device)}
        return JSONResponse(answer)

    async def _answer(self, request: Request) -> Response:
        device, payload = self._device_payload(await request.json(), "/v1/requests/answer")
        if self.refuse_answer is not None:
            status, error = self.refuse_answer
            return JSONResponse({"error": error, "detail": f"refused: {error}"}, status_code=status)
        stored = self.requests.get(payload["id"])
        if stored is None or stored.device != device:
            return JSONResponse({"error": "unknown_request", "detail": "no such request"}, status_code=404)
        if stored.state != "PENDING" or stored.claims["exp"] <= time.time():
            return JSONResponse({"error": "not_pending", "detail": "the request is decided"}, status_code=409)
        if payload["display_hash"] != stored.display_hash:
            return JSONResponse({"error": "display_mismatch", "detail": "display hash"}, status_code=409)
        verified = None
        if payload["decision"] == "approve":
            verified = self._check_result(stored, payload)
        stored.state = "APPROVED" if payload["decision"] == "approve" else "REJECTED"
        stored.result = payload
        self.answers.append({**payload, "verified": verified})
        return JSONResponse({"id": stored.claims["id"], "state": stored.state})

    async def _renew(self, request: Request) -> Response:
        self._device_payload(await request.json(), "/v1/renew")
        self.renewals += 1
        if self.renew_answer is None:
            return JSONResponse({"error": "not_found", "detail": "no renewal here"}, status_code=404)
        return JSONResponse(self.renew_answer)

    async def _push(self, request: Request) -> Response:
        self.push_attempts.append(time.monotonic())
        device, _ = self._device_payload(await request.json(), "/v1/push")
        if self.refuse_pushes > 0:
            self.refuse_pushes -= 1
            return JSONResponse({"error": "busy", "detail": "try later"}, status_code=503)
        return StreamingResponse(self._events(device), media_type="text/event-stream")

    async def _events(self, device: str) -> AsyncIterator[bytes]:
        sent: set[str] = set()
        started = last = time.monotonic()
        while not self.closing:
            for rid, stored in list(self.requests.items()):
                if stored.device != device:
                    continue
                if rid not in sent and stored.state == "PENDING":
                    sent.add(rid)
                    yield f"event: request\ndata: {stored.jws}\n\n".encode()
                elif rid in sent and stored.state != "PENDING":
                    sent.discard(rid)
                    yield f"event: gone\ndata: {rid}\n\n".encode()
            if time.monotonic() - last > 1.0:
                last = time.monotonic()
                yield b": keep-alive\n\n"
            if self.stream_seconds is not None and time.monotonic() - started > self.stream_seconds:
                return
            await asyncio.sleep(0.05)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/server", self._server),
                Route("/v1/nonce", self._nonce),
                Route("/v1/requests", self._requests, methods=["POST"]),
                Route("/v1/requests/answer", self._answer, methods=["POST"]),
                Route("/v1/push", self._push, methods=["POST"]),
                Route("/v1/renew", self._renew, methods=["POST"]),
            ]
        )

    # --- running ----------------------------------------------------------------------------------

    def _serve(self, port: int, tls: tuple[str, str]) -> None:
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ssl_certfile=tls[0],
            ssl_keyfile=tls[1],
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the stand-in server did not start")
            time.sleep(0.02)
        self._servers.append((server, thread))

    def start(self) -> StandIn:
        tls_key = ec.generate_private_key(ec.SECP256R1())
        cert = make_cert("127.0.0.1", "127.0.0.1", tls_key, tls_key.public_key())
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.pin = cert_pin(self.cert_der)
        self.workdir.mkdir(parents=True, exist_ok=True)
        certfile, keyfile = self.workdir / "tls.pem", self.workdir / "tls.key"
        certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keyfile.write_bytes(
            tls_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        self._serve(port, (str(certfile), str(keyfile)))
        return self

    def stop(self) -> None:
        self.closing = True
        for server, thread in self._servers:
            server.should_exit = True
            thread.join(10)

    # --- binding a real card to it ------------------------------------------------------------------

    def bind_card(
        self, label: str, pin: str, so_pin: str, keys: list[tuple[str, str, bool]], pin_check: str = "local"
    ) -> tuple[str, str]:
        """A new local card with keys (profile id, kind, always-authenticate) made on it and certified here,
        bound to this server as an activation would bind it; (serial, device id)."""
        info = api.create_card(label, pin, so_pin, policy=api.default_policy_from_env())
        card = api.find_card(info.serial)
        recorded = []
        for key_name, kind, always in keys:
            made = api.generate_key(info.serial, kind, f"{label} {key_name}", pin, always)
            key_id = bytes.fromhex(made[0].id)
            spki = service.with_key_id(card, key_id, C.CKO_PUBLIC_KEY)[0].attrs[C.CKA_PUBLIC_KEY_INFO]
            public = serialization.load_der_public_key(spki)
            cert = make_cert(f"alice {key_name}", "Stand-in CA", self.ca_key, public)
            der = cert.public_bytes(serialization.Encoding.DER)
            with api.session(card, pin=pin):
                api.store_certificate(card, der, key_id, f"{label} {key_name}")
            recorded.append({"id": key_name, "usage": key_name, "format": "certificate", "key_id": key_id.hex()})
        dev = DeviceKey(rsa.generate_private_key(65537, 2048))
        device = "dev-" + secrets.token_hex(4)
        self.devices[device] = dev.public_jwk()
        eng = api.engine()
        binding = {
            "url": self.url,
            "pin": self.pin,
            "cert": self.cert_der.hex(),
            "state": "active",
            "device": device,
            "device_key": dev.seal(eng.device_key, info.serial),
            "user": "alice",
            "profile": "stand-in",
            "offline": pin_check == "local",
            "pin_check": pin_check,
            "keys": recorded,
            "activated": time.time(),
        }
        eng.set_binding(card.slot_id, binding)
        return info.serial, device
