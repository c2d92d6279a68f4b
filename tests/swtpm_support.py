"""A software TPM 2.0 (Debian's swtpm) on loopback for one test module: started fresh (its own state, so its
own seeds), reached through the TSS's swtpm TCTI, stopped at the end."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import require_tool
from tests.process_end import stop_process


def _free_ports() -> int:
    """A port whose next one is free too: the TSS's swtpm TCTI finds the control channel at port + 1."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two free loopback ports in a row")


@contextmanager
def swtpm(state: Path) -> Iterator[str]:
    """A running swtpm whose state lives in `state`; yields its TCTI string (for VSC_TPM_TCTI)."""
    binary = require_tool("swtpm", "swtpm")
    state.mkdir(parents=True, exist_ok=True)
    port = _free_ports()
    ctrl = port + 1
    proc = subprocess.Popen(
        [
            binary,
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state}",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={ctrl},bindaddr=127.0.0.1",
            "--flags",
            "not-need-init,startup-clear",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise AssertionError(f"swtpm did not start: {err}") from None
                time.sleep(0.05)
        yield f"swtpm:host=127.0.0.1,port={port}"
    finally:
        stop_process(proc)
