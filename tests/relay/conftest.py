from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.relay.relay_process import Relay, start_relay


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """One relay with the default limits for a test module."""
    started = start_relay(tmp_path_factory.mktemp("relay"))
    yield started
    started.stop()


@pytest.fixture
def make_relay(tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    """Start relays with options of a test's own (stopped at its end): make_relay("--max-per-topic", "2")."""
    started: list[Relay] = []

    def make(*args: str, **kwargs: Any) -> Relay:
        relay = start_relay(tmp_path / f"relay{len(started)}", *args, **kwargs)
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.stop()
