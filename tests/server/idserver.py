"""The real identity server as a subprocess on 127.0.0.1 (a free port, TLS), and a protocol driver with
software keys for tests that exercise the server alone (bad input, concurrency)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.process_end import stop_process
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.provisioning.http import PinnedClient, ServerError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class IdServer:
    data: Path
    port: int
    proc: subprocess.Popen[bytes]
    url: str = ""
    pin: str = ""
    env: dict[str, str] = field(default_factory=dict)
    database: str | None = None  # the postgresql:// URL it runs on; None: SQLite in its data directory

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of a statement on the server's database, whichever back end (`?` placeholders); [] for a
        statement that returns none (an UPDATE, committed)."""
        if self.database is None:
            with sqlite3.connect(self.data / "server.sqlite") as db:
                return db.execute(sql, params).fetchall()
        import psycopg

        with psycopg.connect(self.database, autocommit=True) as conn:
            cur = conn.execute(sql.replace("%", "%%").replace("?", "%s"), params)
            return cur.fetchall() if cur.description is not None else []

    def client(self) -> PinnedClient:
        return PinnedClient(self.url, self.pin)

    def admin(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        token = json.loads((self.data / "admin.json").read_text())["token"]
        with self.client() as c:
            return c.call(method, path, body, headers={"Authorization": f"Bearer {token}"})

    def link(self, user: str = "alice", profile: str = "default") -> str:
        return str(self.admin("POST", "/admin/activations", {"user": user, "profile": profile})["link"])

    def devices(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/admin/devices")["devices"])

    def fuzz(self, *options: str, examples: int, timeout_s: int) -> subprocess.CompletedProcess[str]:
        """schemathesis over the server's published OpenAPI document (TLS with its CA), checking that no
        request gets a server error; OPTIONS narrow it (paths, headers)."""
        return subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{self.url}/openapi.json", *options,
             "--checks", "not_a_server_error", "--tls-verify", str(self.data / "ca.pem"),
             "--max-examples", str(examples), "--request-timeout", str(timeout_s)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    def stop(self) -> None:
        stop_process(self.proc)


def start_server(
    data: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
    args: tuple[str, ...] = (),
    database: str | None = None,
) -> IdServer:
    port = port or free_port()
    if database is not None:
        args = ("--database", database, *args)
    data.mkdir(parents=True, exist_ok=True)
    log = open(data.parent / f"{data.name}.log", "ab")  # closed with the process
    # the address limits (tested on their own in test_limits.py) would trip over tests sharing one server
    relaxed = {"VSC_SERVER_RATE_LIMIT": "10000,100000", "VSC_SERVER_CODE_LIMIT": "10000,100000"}
    full_env = {**os.environ, "VSC_SERVER_PIN_DELAY": "0.05", **relaxed, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsc_provider.cli", "server", "run", "--data", str(data), "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
    )
    server = IdServer(data, port, proc, env=full_env, database=database)
    try:
        _wait_until_up(server, data)
    except BaseException:
        server.stop()  # never leave a server behind a failed start
        raise
    return server


def _wait_until_up(server: IdServer, data: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited: {(data.parent / f'{data.name}.log').read_text()}")
        info = data / "server.json"
        if info.exists():
            where = json.loads(info.read_text())
            server.url, server.pin = where["url"], where["pin"]
            try:
                with server.client() as c:
                    c.call("GET", "/v1/server")
                return
            except ServerError:
                pass
        time.sleep(0.1)
    raise RuntimeError("the identity server did not come up within 60 s")


# --- a software device for server-only tests ------------------------------------------------------


def software_csr(key: Any, cn: str = "test") -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    return wire.b64u(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def light_request(
    server: IdServer, link: str, device: DeviceKey | None = None, **overrides: Any
) -> tuple[dict[str, Any], PinnedClient]:
    """A valid activation JWS for a 'light' profile link (one P-256 key), built with software keys."""
    parsed = wire.ActivationLink.parse(link)
    device = device or DeviceKey.generate()
    client = server.client()
    payload = {
        "code": parsed.code,
        "keys": [{"id": "auth", "csr": software_csr(ec.generate_private_key(ec.SECP256R1()))}],
    }
    payload.update(overrides)
    return device.sign(server.url + "/v1/activate", client.nonce(), payload), client


def weak_device() -> DeviceKey:
    return DeviceKey(rsa.generate_private_key(65537, 1024))
