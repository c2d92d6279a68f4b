"""The provisioning suites run against a server on SQLite and against one on PostgreSQL, as tests/server does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.conftest import BACK_ENDS, database, start_for
from tests.server.idserver import IdServer

__all__ = ["database", "id_server"]  # database: the back-end parameter of servers a test starts itself


@pytest.fixture(scope="session", params=BACK_ENDS)
def id_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdServer]:
    server = start_for(request, tmp_path_factory.mktemp("idserver") / "data")
    yield server
    server.stop()
