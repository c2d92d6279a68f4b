"""Load on the identity server over loopback: activations/s, PIN checks/s, status calls/s and request
create -> approve rounds/s (benchmarks/server_request_load.py), with p50/p99 latency, at 1, 2 and 4 instances
on one PostgreSQL database and at 1 on SQLite.

An httpx async driver sends precomputed signed bodies (device keys, CSRs and JWS are made before the clock
starts, nonces fetched then) round-robin to the instances, CONCURRENCY in flight. Each phase is bounded in
count and in time. Run: `.venv/bin/python -m benchmarks.server_load [--quick] [--phases request]
[--configs PostgreSQL1] [--profile /tmp/prof]` (prints a markdown table).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from benchmarks.latency import phase_figures
from benchmarks.server_request_load import (
    async_clients,
    connect,
    drive_requests,
    prepare,
    relying_party,
    request_devices,
)
from tests.server.idserver import IdServer, software_csr, start_server
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey, jwe_to_server

CONCURRENCY = 32
PHASE_SECONDS = 60.0  # a phase stops here even if its count is not done
PHASES = ("activation", "pin", "status", "request")


@dataclass
class Counts:
    activations: int = 200
    pins: int = 400
    statuses: int = 1000
    pin_devices: int = 16  # online devices the PIN checks are spread over (each try locks its device's row)
    requests: int = 200  # create -> approve rounds
    request_devices: int = CONCURRENCY  # one per worker, each with a user of its own

    @property
    def device_keys(self) -> int:
        return self.activations + self.pin_devices + self.request_devices


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
    clients = async_clients(servers, CONCURRENCY)
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
        await connect(clients, CONCURRENCY)
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
    finally:
        for c in clients:
            await c.aclose()
    return phase_figures(latencies, elapsed, failed=failures)


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


def measure(
    instances: int,
    database: str | None,
    keys: list[DeviceKey],
    counts: Counts,
    phases: tuple[str, ...] = PHASES,
    profile: Path | None = None,
) -> dict[str, dict[str, float]]:
    """One configuration: a new cluster (and database), the phases asked for, the cluster stopped. With
    `profile`, py-spy samples the first instance during each phase (collapsed stacks in PROFILE-PHASE.txt)."""
    root = Path(tempfile.mkdtemp(prefix="vsc-load-"))
    servers = _cluster(root, instances, database)
    try:
        results = {}

        def run(phase: str, driving: Any) -> None:
            with _profiled(servers[0], profile, phase):
                instances_cpu, database_cpu = _cpu([s.proc.pid for s in servers]), _cpu(_backends(database))
                results[phase] = figures = asyncio.run(driving)
                # CPU per operation: less at the mercy of other load on the machine than ops/s
                done = max(figures["done"], 1.0)
                figures["server_cpu_ms"] = (_cpu([s.proc.pid for s in servers]) - instances_cpu) * 1000 / done
                figures["db_cpu_ms"] = (_cpu(_backends(database)) - database_cpu) * 1000 / done

        if "activation" in phases:
            run("activation", _drive(servers, _activation_calls(servers, keys[: counts.activations])))
        if "pin" in phases or "status" in phases:
            verifier = b"v" * 32
            pin_keys = keys[counts.activations : counts.activations + counts.pin_devices]
            pin_devices = list(zip(pin_keys, _online_devices(servers[0], pin_keys, verifier), strict=True))

            def proof(nonce: str) -> dict[str, Any]:
                return {"proof": wire.b64u(wire.pin_proof(verifier, nonce))}

            if "pin" in phases:
                run("pin", _drive(servers, _signed_calls(servers, pin_devices, "/v1/pin", counts.pins, proof)))
            if "status" in phases:
                calls = _signed_calls(servers, pin_devices, "/v1/status", counts.statuses, lambda _: {})
                run("status", _drive(servers, calls))
        if "request" in phases:
            devices = request_devices(servers, keys[counts.activations + counts.pin_devices : counts.device_keys])
            api_key = relying_party(servers[0])
            prepared = prepare(servers, devices, counts.requests)
            run("request", drive_requests(servers, devices, prepared, api_key, PHASE_SECONDS))
        return results
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _cpu(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _backends(database: str | None) -> list[int]:
    """The PostgreSQL processes serving a database URL's port (the cluster's postmaster and its children)."""
    if database is None:
        return []
    port = f"-c port={database.rsplit(':', 1)[1].split('/')[0]} "
    postmaster = [
        int(d.name)
        for d in Path("/proc").iterdir()
        if d.name.isdigit() and port in _read(d / "cmdline").replace("\0", " ")
    ]
    children = [
        int(d.name)
        for d in Path("/proc").iterdir()
        if d.name.isdigit() and _read(d / "stat").rsplit(")", 1)[-1].split()[1:2] == [str(p) for p in postmaster[:1]]
    ]
    return postmaster + children


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@contextmanager
def _profiled(server: IdServer, profile: Path | None, phase: str) -> Iterator[None]:
    """py-spy (pip install py-spy; root or ptrace rights) sampling one instance while a phase runs."""
    if profile is None:
        yield
        return
    out = Path(f"{profile}-{phase}.txt")
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "-o",
            str(out),
            "-p",
            str(server.proc.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the clock
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        spy.wait(60)


def configurations(postgres_url: Callable[[], str]) -> list[tuple[str, int, Callable[[], str | None]]]:
    return [
        ("SQLite", 1, lambda: None),
        ("PostgreSQL", 1, postgres_url),
        ("PostgreSQL", 2, postgres_url),
        ("PostgreSQL", 4, postgres_url),
    ]


HEADINGS = {"activation": "activations/s", "pin": "PIN checks/s", "status": "status/s", "request": "requests/s"}


def table(rows: list[tuple[str, int, dict[str, dict[str, float]]]]) -> str:
    phases = [p for p in PHASES if rows and p in rows[0][2]]
    lines = [
        "| back end | instances | " + " | ".join(f"{HEADINGS[p]} | p50 / p99 ms" for p in phases) + " |",
        "|---|---|" + "---|---|" * len(phases),
    ]
    for backend, n, r in rows:
        cells = [f"{r[k]['ops_s']:.0f} | {r[k]['p50_ms']:.0f} / {r[k]['p99_ms']:.0f}" for k in phases]
        lines.append(f"| {backend} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(rows: list[tuple[str, int, dict[str, dict[str, float]]]]) -> str:
    """CPU milliseconds per operation: the instances' and PostgreSQL's."""
    phases = [p for p in PHASES if rows and p in rows[0][2]]
    lines = [
        "| back end | instances | " + " | ".join(f"{HEADINGS[p][:-2]}: server / db CPU ms" for p in phases) + " |",
        "|---|---|" + "---|" * len(phases),
    ]
    for backend, n, r in rows:
        cells = [f"{r[k]['server_cpu_ms']:.1f} / {r[k]['db_cpu_ms']:.1f}" for k in phases]
        lines.append(f"| {backend} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from tests.postgres import Postgres

    parser = argparse.ArgumentParser(description="load on the identity server (loopback)")
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"some of {','.join(PHASES)}")
    parser.add_argument("--configs", default="all", help="'all', or e.g. 'PostgreSQL1' to run one configuration")
    parser.add_argument("--profile", type=Path, help="py-spy the first instance: collapsed stacks to PROFILE-PHASE.txt")
    args = parser.parse_args()
    phases = tuple(p for p in PHASES if p in args.phases.split(","))
    counts = Counts(40, 80, 200, 8, 40, 8) if args.quick else Counts()
    print(f"making {counts.device_keys} device keys ...", file=sys.stderr)
    keys = [DeviceKey.generate() for _ in range(counts.device_keys)]
    cluster = Postgres()
    rows = []
    try:
        for backend, n, url in configurations(cluster.database):
            if args.configs != "all" and f"{backend}{n}" not in args.configs.split(","):
                continue
            print(f"{backend} x{n} ...", file=sys.stderr)
            result = measure(n, url(), keys, counts, phases, args.profile)
            for phase, figures in result.items():
                assert figures["failed"] == 0, (backend, n, phase, figures)
            rows.append((backend, n, result))
            print(table(rows[-1:]), file=sys.stderr)
    finally:
        cluster.stop()
    print(table(rows))
    print()
    print(cpu_table(rows))
    pg = {n: r for b, n, r in rows if b == "PostgreSQL"}
    for phase in phases if 1 in pg and 4 in pg else ():
        print(f"- {phase}: 4 instances / 1 instance = {pg[4][phase]['ops_s'] / pg[1][phase]['ops_s']:.2f}x")


if __name__ == "__main__":
    main()
