"""A private pcscd in the foreground with vsmartcard's vpcd reader on a free port, and `vsc pcsc serve` as the
card in it. Debian 12's pcscd (1.9.9) always listens on /run/pcscd/pcscd.comm (it does not read
PCSCLITE_CSOCK_NAME; its clients do): the tests refuse to start when another pcscd already holds it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.exclusive import exclusive
from tests.process_end import stop_process

PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
READER = "Virtual PCD 00 00"


def _socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A port p with p and p+1 free (vpcd opens a second reader on p+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free ports in a row")


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def private_pcscd(workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """pcscd -f with only a vpcd reader listening on `port` (its own reader.conf.d directory); other test
    processes wait for their turn, since pcscd's socket is one for the whole machine."""
    with exclusive("pcscd"):
        yield from _pcscd(workdir, port)


def _pcscd(workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    if _socket_answers(PCSCD_SOCKET):
        pytest.fail(f"another pcscd is running ({PCSCD_SOCKET}): stop it, the PC/SC tests start their own")
    conf = workdir / "reader.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "vpcd").write_text(
        f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{port:X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:X}\n'
    )
    log = (workdir / "pcscd.log").open("wb")
    proc = subprocess.Popen(["pcscd", "--foreground", "--apdu", "--config", str(conf)], stdout=log, stderr=log)
    try:
        wait_for(lambda: _socket_answers(PCSCD_SOCKET), 15, "pcscd's socket")
        yield proc
    finally:
        stop_process(proc)
        log.close()


def start_serve(home: Path, card: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VSC_HOME": str(home)}
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "vsc_provider.cli", "pcsc", "serve", "--card", card, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )


def reader_has_card() -> bool:
    out = subprocess.run(["opensc-tool", "--list-readers"], capture_output=True, text=True, timeout=30).stdout
    return any(READER in line and " Yes " in line for line in out.splitlines())


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, and the exit code (it must stop by itself)."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(15)
