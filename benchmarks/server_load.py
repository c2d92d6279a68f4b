"""Load on the identity server over loopback: activations/s, PIN checks/s and status calls/s, with p50/p99
latency, at 1, 2 and 4 instances on one PostgreSQL database and at 1 on SQLite.

An httpx async driver sends precomputed signed bodies (device keys, CSRs and JWS are made before the clock
starts, nonces fetched then) round-robin to the instances, CONCURRENCY in flight. Each phase is bounded in
count and in time. Run: `.venv/bin/python -m benchmarks.server_load [--quick]` (prints a markdown table).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.server.idserver import IdServer, software_csr, start_server
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey, jwe_to_server

CONCURRENCY = 32
PHASE_SECONDS = 60.0  # a phase stops here even if its count is not done


@dataclass
class Counts:
    activations: int = 200
    pins: int = 400
    statuses: int = 1000
    pin_devices: int = 16  # online devices the PIN checks are spread over (each try locks its device's row)


def _cluster(root: Path, instances: int, database: str | None) -> list[IdServer]:
    first = start_server(root / "i0", database=database)
    servers = [first]
    for n in range(1, instances):
        shutil.copytree(first.data, root / f"i{n}", ignore=shutil.ignore_patterns("server.json"))
        servers.append(start_server(root / f"i{n}", database=database))
    return servers


def _nonces(server: IdServer, count: int) -> list[str]:
    with server.client() as c:
        return [c.nonce() for _ in range(count)]


async def _drive(servers: list[IdServer], calls: list[tuple[int, str, dict[str, Any]]]) -> dict[str, float]:
    """POST each (instance, path, body); ops/s over the phase and p50/p99 latency in ms of the answers."""
    context = ssl.create_default_context(cafile=str(servers[0].data / "ca.pem"))
    clients = [httpx.AsyncClient(base_url=s.url, verify=context, timeout=60.0) for s in servers]
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[tuple[int, str, dict[str, Any]]] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)
    deadline = time.perf_counter() + PHASE_SECONDS

    async def worker() -> None:
        nonlocal failures
        while not queue.empty() and time.perf_counter() < deadline:
            instance, path, body = queue.get_nowait()
            started = time.perf_counter()
            response = await clients[instance].post(path, json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += response.status_code != 200

    try:
        for c in clients:  # connections up before the clock
            await c.get("/v1/server")
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
    finally:
        for c in clients:
            await c.aclose()
    latencies.sort()
    return {
        "ops_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "done": float(len(latencies)),
        "failed": float(failures),
    }


def _activation_calls(servers: list[IdServer], keys: list[DeviceKey]) -> list[tuple[int, str, dict[str, Any]]]:
    links = [servers[0].link(f"load{n}", "light") for n in range(len(keys))]
    calls = []
    for n, (link, device) in enumerate(zip(links, keys, strict=True)):
        server = servers[n % len(servers)]
        nonce = _nonces(server, 1)[0]
        csr = software_csr(ec.generate_private_key(ec.SECP256R1()))
        payload = {"code": wire.ActivationLink.parse(link).code, "keys": [{"id": "auth", "csr": csr}]}
        calls.append((n % len(servers), "/v1/activate", device.sign(server.url + "/v1/activate", nonce, payload)))
    return calls


def _online_devices(server: IdServer, keys: list[DeviceKey], verifier: bytes) -> list[str]:
    with server.client() as c:
        jwks = c.call("GET", "/v1/server")["jwks"]
    ids = []
    for n, device in enumerate(keys):
        code = wire.ActivationLink.parse(server.link(f"pin{n}", "online")).code
        csr = software_csr(rsa.generate_private_key(65537, 2048))
        payload = {"code": code, "keys": [{"id": "auth", "csr": csr}], "pin_verifier": jwe_to_server(jwks, verifier)}
        with server.client() as c:
            answer = c.call("POST", "/v1/activate", device.sign(server.url + "/v1/activate", c.nonce(), payload))
        ids.append(str(answer["device"]))
    return ids


def _signed_calls(
    servers: list[IdServer],
    devices: list[tuple[DeviceKey, str]],
    path: str,
    count: int,
    payload: Callable[[str], dict[str, Any]],
) -> list[tuple[int, str, dict[str, Any]]]:
    nonces = [_nonces(s, count // len(servers) + 1) for s in servers]
    calls = []
    for n in range(count):
        instance = n % len(servers)
        nonce = nonces[instance][n // len(servers)]
        device, device_id = devices[n % len(devices)]
        body = device.sign(servers[instance].url + path, nonce, payload(nonce), kid=device_id)
        calls.append((instance, path, body))
    return calls


def measure(instances: int, database: str | None, keys: list[DeviceKey], counts: Counts) -> dict[str, dict[str, float]]:
    """One configuration: a new cluster (and database), the three phases, the cluster stopped."""
    root = Path(tempfile.mkdtemp(prefix="vsc-load-"))
    servers = _cluster(root, instances, database)
    try:
        results = {}
        calls = _activation_calls(servers, keys[: counts.activations])
        results["activation"] = asyncio.run(_drive(servers, calls))
        verifier = b"v" * 32
        pin_keys = keys[counts.activations : counts.activations + counts.pin_devices]
        pin_devices = list(zip(pin_keys, _online_devices(servers[0], pin_keys, verifier), strict=True))

        def proof(nonce: str) -> dict[str, Any]:
            return {"proof": wire.b64u(wire.pin_proof(verifier, nonce))}

        calls = _signed_calls(servers, pin_devices, "/v1/pin", counts.pins, proof)
        results["pin"] = asyncio.run(_drive(servers, calls))
        calls = _signed_calls(servers, pin_devices, "/v1/status", counts.statuses, lambda _: {})
        results["status"] = asyncio.run(_drive(servers, calls))
        return results
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def configurations(postgres_url: Callable[[], str]) -> list[tuple[str, int, Callable[[], str | None]]]:
    return [
        ("SQLite", 1, lambda: None),
        ("PostgreSQL", 1, postgres_url),
        ("PostgreSQL", 2, postgres_url),
        ("PostgreSQL", 4, postgres_url),
    ]


def table(rows: list[tuple[str, int, dict[str, dict[str, float]]]]) -> str:
    lines = [
        "| back end | instances | activations/s | p50 / p99 ms | PIN checks/s | p50 / p99 ms | status/s"
        " | p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend, n, r in rows:
        cells = [
            f"{r[k]['ops_s']:.0f} | {r[k]['p50_ms']:.0f} / {r[k]['p99_ms']:.0f}"
            for k in ("activation", "pin", "status")
        ]
        lines.append(f"| {backend} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from tests.postgres import Postgres

    quick = "--quick" in sys.argv
    counts = Counts(40, 80, 200, 8) if quick else Counts()
    print(f"making {counts.activations + counts.pin_devices} device keys ...", file=sys.stderr)
    keys = [DeviceKey.generate() for _ in range(counts.activations + counts.pin_devices)]
    cluster = Postgres()
    rows = []
    try:
        for backend, n, url in configurations(cluster.database):
            print(f"{backend} x{n} ...", file=sys.stderr)
            result = measure(n, url(), keys, counts)
            for phase, figures in result.items():
                assert figures["failed"] == 0 or phase == "pin", (backend, n, phase, figures)
            rows.append((backend, n, result))
            print(table(rows[-1:]), file=sys.stderr)
    finally:
        cluster.stop()
    print(table(rows))
    pg = {n: r for b, n, r in rows if b == "PostgreSQL"}
    for phase in ("activation", "pin", "status"):
        print(f"- {phase}: 4 instances / 1 instance = {pg[4][phase]['ops_s'] / pg[1][phase]['ops_s']:.2f}x")


if __name__ == "__main__":
    main()
