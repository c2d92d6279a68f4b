"""The request phase of the server load benchmark (benchmarks/server_load.py): relying-party request create
-> device approval per second, each one the round a real device makes.

Each worker owns one device (a `light` activation whose P-256 key the driver holds, one user per device) and
one instance: it creates an auth request as a relying party (POST /rp/v1/requests), fetches what is pending
as the device (POST /v1/requests, signed beforehand), verifies the request document and signs the answer with
the device-side code (vsc_provider.requests.verify and .signing), and posts it (POST /v1/requests/answer),
which the server checks in full before the request is APPROVED. Latency is that whole round.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from benchmarks.latency import phase_figures
from tests.server.idserver import IdServer, light_request, software_csr
from vsc_provider.ck.params import Mechanism
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.requests.signing import JWS_MECHANISMS, auth_jws
from vsc_provider.requests.verify import pending_request


@dataclass
class RequestDevice:
    server: int  # the instance this device's worker talks to
    user: str
    key: DeviceKey
    device_id: str
    card_key: ec.EllipticCurvePrivateKey  # the key the server certified (the card's, in software here)
    certificate: str  # b64u DER

    def sign(self, mechanism: Mechanism, data: bytes) -> bytes:
        """What the card gives for ES256: r || s."""
        assert mechanism == JWS_MECHANISMS["ES256"]
        r, s = decode_dss_signature(self.card_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def async_clients(servers: list[IdServer], concurrency: int) -> list[httpx.AsyncClient]:
    """One client per instance keeping a connection for each of `concurrency` workers (httpx keeps 20 idle
    ones by default: more workers would pay a TLS handshake on most calls, which is not what is measured)."""
    context = ssl.create_default_context(cafile=str(servers[0].data / "ca.pem"))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return [httpx.AsyncClient(base_url=s.url, verify=context, timeout=60.0, limits=limits) for s in servers]


async def connect(clients: list[httpx.AsyncClient], concurrency: int) -> None:
    """Every connection the workers will use up before the clock (a TLS handshake each)."""
    await asyncio.gather(*(c.get("/v1/server") for c in clients for _ in range(concurrency)))


def request_devices(servers: list[IdServer], keys: list[DeviceKey]) -> list[RequestDevice]:
    """One activated device per key, spread round-robin over the instances (made before the clock)."""
    out = []
    for n, key in enumerate(keys):
        server, user = servers[n % len(servers)], f"rq{n}"
        card_key = ec.generate_private_key(ec.SECP256R1())
        body, client = light_request(
            server, servers[0].link(user, "light"), device=key, keys=[{"id": "auth", "csr": software_csr(card_key)}]
        )
        with client:
            answer = client.call("POST", "/v1/activate", body)
        certificate = answer["keys"][0]["certificate"]
        out.append(RequestDevice(n % len(servers), user, key, str(answer["device"]), card_key, certificate))
    return out


def relying_party(server: IdServer) -> str:
    """A new relying party's API key."""
    return str(server.admin("POST", "/admin/relying-parties", {"name": f"load {time.time_ns()}"})["api_key"])


Prepared = list[list[tuple[dict[str, Any], str]]]  # per device: (signed pending-list body, answer nonce)


def prepare(servers: list[IdServer], devices: list[RequestDevice], count: int) -> Prepared:
    """`count` rounds dealt to the devices: two nonces each (the pending list, the answer) fetched and the
    pending-list bodies signed before the clock."""
    prepared = []
    for w, device in enumerate(devices):
        server = servers[device.server]
        with server.client() as c:
            nonces = [(c.nonce(), c.nonce()) for _ in range(w, count, len(devices))]
        url = server.url + "/v1/requests"
        prepared.append([(device.key.sign(url, a, {}, kid=device.device_id), b) for a, b in nonces])
    return prepared


async def drive_requests(
    servers: list[IdServer], devices: list[RequestDevice], prepared: Prepared, api_key: str, seconds: float
) -> dict[str, float]:
    """The prepared create -> approve rounds, one worker per device; ops/s and p50/p99 of a round in ms."""
    with servers[0].client() as c:
        jwks = c.call("GET", "/v1/server")["jwks"]
    clients = async_clients(servers, len(devices))
    rp_headers = {"Authorization": f"Bearer {api_key}"}
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker(device: RequestDevice, work: list[tuple[dict[str, Any], str]]) -> None:
        nonlocal failures
        client, server = clients[device.server], servers[device.server]
        for pending_body, answer_nonce in work:
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            made = await client.post("/rp/v1/requests", json={"user": device.user, "kind": "auth"}, headers=rp_headers)
            request_id = made.json()["id"]
            listed = await client.post("/v1/requests", json=pending_body)
            token = next(t for t in listed.json()["requests"] if _claims(t)["id"] == request_id)
            binding = {"url": server.url, "device": device.device_id}
            request = pending_request(token, jwks, binding, "load", "load")
            payload = {
                "id": request.id,
                "display_hash": request.display_hash,
                "decision": "approve",
                "signature": auth_jws(request, device.sign, time.time()),
                "certificate": device.certificate,
            }
            body = device.key.sign(server.url + "/v1/requests/answer", answer_nonce, payload, kid=device.device_id)
            answered = await client.post("/v1/requests/answer", json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += answered.status_code != 200 or answered.json().get("state") != "APPROVED"

    try:
        await connect(clients, len(devices))
        began = time.perf_counter()
        await asyncio.gather(*(worker(d, w) for d, w in zip(devices, prepared, strict=True)))
        elapsed = time.perf_counter() - began
    finally:
        for c in clients:
            await c.aclose()
    return phase_figures(latencies, elapsed, failed=failures)


def _claims(token: str) -> dict[str, Any]:
    """A request document's claims, unverified (to find one in the list; pending_request verifies it)."""
    return dict(json.loads(wire.unb64u(token.split(".")[1])))
