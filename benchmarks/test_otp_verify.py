"""OTP verifications per second at the identity server over loopback (POST /v1/otp/verify with a relying
party's API key): one server on SQLite, DEVICES software devices with HOTP seeds, one client task per device
sending its codes in order (each one valid, so every call commits a new counter), all tasks at once."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.common import smoke
from benchmarks.latency import phase_figures
from tests.conftest import run_vsc
from tests.server.idserver import IdServer, light_request, software_csr, start_server
from vsc_provider.provisioning.device import DeviceKey

DEVICES = 16


def _hotp_device(server: IdServer, n: int) -> tuple[str, pyotp.HOTP]:
    link = server.admin("POST", "/admin/activations", {"user": f"bench{n}", "profile": "light", "otp": "hotp"})
    key = DeviceKey.generate()
    keys = [{"id": "auth", "csr": software_csr(ec.generate_private_key(ec.SECP256R1()))}]
    body, client = light_request(server, str(link["link"]), device=key, keys=keys)
    with client:
        answer = client.call("POST", "/v1/activate", body)
    seed = key.open(answer["otp"]["secret"])
    return str(answer["device"]), pyotp.HOTP(base64.b32encode(seed).decode())


async def _drive(server: IdServer, api_key: str, devices: list[tuple[str, list[str]]]) -> dict[str, float]:
    context = ssl.create_default_context(cafile=str(server.data / "ca.pem"))
    latencies: list[float] = []
    invalid = 0
    async with httpx.AsyncClient(
        base_url=server.url, verify=context, timeout=60.0, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        await client.get("/v1/server")

        async def one_device(device: str, codes: list[str]) -> None:
            nonlocal invalid
            for code in codes:
                started = time.perf_counter()
                response = await client.post("/v1/otp/verify", json={"device": device, "code": code})
                latencies.append((time.perf_counter() - started) * 1000)
                invalid += response.status_code != 200 or not response.json()["valid"]

        began = time.perf_counter()
        await asyncio.gather(*(one_device(d, codes) for d, codes in devices))
        elapsed = time.perf_counter() - began
    return phase_figures(latencies, elapsed, invalid=invalid)


def measure(root: Path, per_device: int) -> dict[str, float]:
    server = start_server(root / "data")
    try:
        out = run_vsc("server", "rp", "create", "--data", str(server.data), "--name", "bench", "--json")
        api_key = json.loads(out.stdout)["api_key"]
        devices = [_hotp_device(server, n) for n in range(DEVICES)]
        plan = [(device, [hotp.at(c) for c in range(per_device)]) for device, hotp in devices]
        return asyncio.run(_drive(server, api_key, plan))
    finally:
        server.stop()


def test_otp_verifications_per_second(benchmark: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    per_device = 3 if smoke(benchmark) else 60
    result = benchmark.pedantic(measure, args=(tmp_path_factory.mktemp("otp-bench"), per_device), rounds=1)
    assert result["invalid"] == 0 and result["done"] == DEVICES * per_device
    common = {"client": "httpx async", "impl": "vsc server", "done": result["done"]}
    rows = [
        {"op": "server OTP verify/s (sqlite x1)", "value": result["ops_s"], "unit": "ops/s", **common},
        {"op": "server OTP verify p50 (sqlite x1)", "value": result["p50_ms"], "unit": "ms", **common},
        {"op": "server OTP verify p99 (sqlite x1)", "value": result["p99_ms"], "unit": "ms", **common},
    ]
    benchmark.extra_info.update(rows[0])
    benchmark.extra_info["more"] = rows[1:]
