"""A lock on one card across processes and threads, for work that must not run twice at once (a renewal):
an flock on a file beside the store, one per card and purpose, created 0600."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

_NAME = re.compile(r"[0-9A-Za-z_-]{1,64}")


def path_of(store_path: str, serial: str, purpose: str) -> str:
    if not (_NAME.fullmatch(serial) and _NAME.fullmatch(purpose)):
        raise ValueError("a card lock is named by the card's serial and a purpose word")
    return os.path.join(os.path.dirname(os.path.abspath(store_path)), f"{purpose}-{serial}.lock")


@contextmanager
def held(store_path: str, serial: str, purpose: str) -> Iterator[None]:
    """Wait for the card's `purpose` lock and hold it for the block. Each call opens its own file description,
    so two threads of one process take turns as two processes do; the lock goes with the process."""
    fd = os.open(path_of(store_path, serial, purpose), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
