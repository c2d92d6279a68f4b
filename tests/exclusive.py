"""Turns across processes for what the tests share with the whole machine: pcscd's fixed socket and Firefox's
system policies file. pytest-xdist's workers (and any other test run on the machine) wait for each other
here instead of failing, with a bound on the wait."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

WAIT_SECONDS = 1800.0  # longer than any one test module that holds a turn
_held: dict[str, tuple[int, int]] = {}  # name -> (locked file descriptor, how many holders in this process)
_guard = threading.Lock()


def _take(name: str) -> int:
    fd = os.open(f"/tmp/vsc-provider-tests-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                pytest.fail(f"waited {WAIT_SECONDS:.0f} s for the {name} turn held by another test process")
            time.sleep(0.2)


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the machine-wide turn NAME (re-entrant within one process: fixtures may nest)."""
    with _guard:
        fd, holders = _held.get(name, (-1, 0))
        if holders == 0:
            fd = _take(name)
        _held[name] = (fd, holders + 1)
    try:
        yield
    finally:
        with _guard:
            fd, holders = _held[name]
            if holders == 1:
                del _held[name]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            else:
                _held[name] = (fd, holders - 1)
