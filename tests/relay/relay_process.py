"""The real `vsc push-relay run` as a subprocess on 127.0.0.1 (a free port, its own empty cwd and HOME), a
listener thread over the relay client, and the post -> received latency measurement (tests and benchmarks)."""

from __future__ import annotations

import base64
import math
import os
import queue
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.process_end import stop_process
from vsc_provider.relay.client import RelayError, listen, post_notification


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_topic() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def fake_jwe(tag: str = "") -> str:
    """A well-formed compact JWE as far as the relay looks (it never decrypts): random parts, a real header."""

    def b64u(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64u(b'{"alg":"RSA-OAEP-256","enc":"A256GCM"}')
    parts = [secrets.token_bytes(256), secrets.token_bytes(12), secrets.token_bytes(40) + tag.encode()]
    return ".".join([header, *map(b64u, parts), b64u(secrets.token_bytes(16))])


@dataclass
class Relay:
    url: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    home: Path
    log: Path
    verify: str | bool = True  # a CA file for a relay with a certificate of the test's own

    def health(self) -> dict[str, int]:
        verify = ssl.create_default_context(cafile=self.verify) if isinstance(self.verify, str) else self.verify
        return dict(httpx.get(self.url + "/v1/health", timeout=5, verify=verify).json())

    def wait_listeners(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.health()["listeners"] != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the relay has {self.health()['listeners']} listeners, not {count}")
            time.sleep(0.02)

    def stop(self) -> None:
        stop_process(self.proc)


def start_relay(
    directory: Path,
    *args: str,
    env: dict[str, str] | None = None,
    scheme: str = "http",
    verify: str | bool = True,
) -> Relay:
    """`vsc push-relay run ARGS` with cwd DIRECTORY/cwd and HOME DIRECTORY/home (both empty), log beside them."""
    port = free_port()
    workdir, home, log = directory / "cwd", directory / "home", directory / "relay.log"
    workdir.mkdir(parents=True)
    home.mkdir()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    full_env.update(HOME=str(home), **(env or {}))
    with open(log, "ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "vsc_provider.cli", "push-relay", "run", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=workdir,
        )
    relay = Relay(f"{scheme}://127.0.0.1:{port}", proc, workdir, home, log, verify)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the relay exited: {log.read_text()}")
        try:
            relay.health()
            return relay
        except httpx.TransportError:
            time.sleep(0.05)
    relay.stop()
    raise RuntimeError("the relay did not come up within 60 s")


class Listener:
    """A thread running client.listen on a topic: what it got (with the time), and how it ended."""

    def __init__(self, url: str, topic: str) -> None:
        self.stop = threading.Event()
        self.got: queue.Queue[tuple[float, str]] = queue.Queue()
        self.error: RelayError | None = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, topic), daemon=True)
        self._thread.start()

    def _run(self, url: str, topic: str) -> None:
        try:
            for jwe in listen(url, topic, self.stop):
                self.got.put((time.perf_counter(), jwe))
        except RelayError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def next(self, timeout: float = 5) -> str:
        return self.got.get(timeout=timeout)[1]

    def close(self) -> None:
        self.stop.set()
        self._thread.join(5)


def post_latencies(relay: Relay, count: int) -> list[float]:
    """Milliseconds from calling post_notification to the listener thread holding the notification, one post at
    a time (each a new connection, as the identity server makes them), COUNT times."""
    topic = new_topic()
    base = relay.health()["listeners"]
    listener = Listener(relay.url, topic)
    try:
        relay.wait_listeners(base + 1)
        out = []
        for i in range(count):
            jwe = fake_jwe(str(i))
            start = time.perf_counter()
            assert post_notification(relay.url, topic, jwe) == 1
            when, got = listener.got.get(timeout=10)
            assert got == jwe
            out.append((when - start) * 1000)
        return out
    finally:
        listener.close()


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "median_ms": statistics.median(ordered),
        "p99_ms": ordered[math.ceil(0.99 * len(ordered)) - 1],  # nearest rank
        "max_ms": ordered[-1],
    }
