from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.idserver import IdServer, start_server

BACK_ENDS = ("sqlite", "postgresql")


def new_database(request: pytest.FixtureRequest, back_end: str) -> str | None:
    """None for SQLite (in the data directory), else the URL of a new database in the test cluster."""
    return request.getfixturevalue("postgres").database() if back_end == "postgresql" else None


def start_for(request: pytest.FixtureRequest, data: Path, **options: Any) -> IdServer:
    """A server on the back end of the fixture's parameter (a new PostgreSQL database for each)."""
    return start_server(data, database=new_database(request, request.param), **options)


def start_beside(request: pytest.FixtureRequest, server: IdServer, data: Path, **options: Any) -> IdServer:
    """Another server (a database of its own) on the back end SERVER runs on."""
    back_end = "sqlite" if server.database is None else "postgresql"
    return start_server(data, database=new_database(request, back_end), **options)


@pytest.fixture(params=BACK_ENDS)
def database(request: pytest.FixtureRequest) -> str | None:
    """The back end for the servers a test starts itself: None (SQLite) or a new PostgreSQL database."""
    return new_database(request, request.param)


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
