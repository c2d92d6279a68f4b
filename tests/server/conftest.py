from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.idserver import IdServer, start_server


@pytest.fixture(scope="session")
def id_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdServer]:
    server = start_server(tmp_path_factory.mktemp("idserver") / "data")
    yield server
    server.stop()
