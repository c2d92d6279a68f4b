from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.idserver import IdServer, start_server

BACK_ENDS = ("sqlite", "postgresql")


def start_for(request: pytest.FixtureRequest, data: Path) -> IdServer:
    """A server on the back end of the fixture's parameter (a new PostgreSQL database for each)."""
    database = request.getfixturevalue("postgres").database() if request.param == "postgresql" else None
    return start_server(data, database=database)


@pytest.fixture(scope="session", params=BACK_ENDS)
def id_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdServer]:
    server = start_for(request, tmp_path_factory.mktemp("idserver") / "data")
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
