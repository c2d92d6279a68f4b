"""End-to-end fixtures: the shared card, a fresh card for tests that change one, and background servers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Background, E2ECard, make_card

from tests.exclusive import exclusive


@pytest.fixture
def background(tmp_path: Path) -> Iterator[object]:
    """Start server processes for one test; every one is stopped when the test ends."""
    started: list[Background] = []

    def start(what: str, cmd: Sequence[str], env: dict[str, str] | None = None, **kw: Any) -> Background:
        log = tmp_path / f"{what.replace(' ', '_').replace('/', '_')}-{len(started)}.log"
        proc = Background(what, cmd, log, env, **kw)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture(scope="session")
def e2e_card(tmp_path_factory: pytest.TempPathFactory) -> E2ECard:
    """The shared card: tests must not add or delete objects on it, nor try wrong PINs (use fresh_card)."""
    base = tmp_path_factory.mktemp("e2e")
    return make_card(base / "vsc-home", base / "work")


@pytest.fixture
def fresh_card(tmp_path: Path) -> E2ECard:
    """A card of its own in its own store, for tests that change it."""
    return make_card(tmp_path / "vsc-home", tmp_path / "work")


@pytest.fixture
def firefox_turn() -> Iterator[None]:
    """Firefox reads the system policies file at start: one test process at a time starts Firefox or
    changes that file."""
    with exclusive("firefox"):
        yield
