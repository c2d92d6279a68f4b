from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.idserver import IdServer, start_server


@pytest.fixture(scope="session")
def id_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdServer]:
    server = start_server(tmp_path_factory.mktemp("idserver") / "data")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def card_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One card store (VSC_HOME) for a module's cards: activating a card takes seconds."""
    home = tmp_path_factory.mktemp("vsc-home")
    saved = {k: os.environ.get(k) for k in ("VSC_HOME", "VSC_PIN_DELAY_BASE")}
    os.environ["VSC_HOME"], os.environ["VSC_PIN_DELAY_BASE"] = str(home), "0.2"
    yield home
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
