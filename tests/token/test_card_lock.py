"""token/card_lock.py: one holder at a time per card and purpose, threads of one process included; the lock
file is the owner's alone."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import pytest

from vsc_provider.token import card_lock


def test_holders_take_turns_and_the_file_is_private(tmp_path: Path) -> None:
    store = str(tmp_path / "store.db")
    inside: list[int] = []
    overlaps: list[int] = []

    def hold(n: int) -> None:
        with card_lock.held(store, "ABCDEF0123456789", "renewal"):
            if inside:
                overlaps.append(n)
            inside.append(n)
            time.sleep(0.05)
            inside.remove(n)

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert overlaps == []
    lock_file = Path(card_lock.path_of(store, "ABCDEF0123456789", "renewal"))
    assert lock_file.parent == tmp_path and stat.S_IMODE(lock_file.stat().st_mode) == 0o600
    with card_lock.held(store, "OTHER", "renewal"), card_lock.held(store, "ABCDEF0123456789", "other"):
        pass  # other cards and other purposes are other locks


def test_a_name_that_is_not_a_serial_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError), card_lock.held(str(tmp_path / "store.db"), "../x", "renewal"):
        pass
