"""The provisioning suites run against a server on SQLite; the modules in ON_POSTGRES run against one on
PostgreSQL too (all of them twice would take too long for CI; tests/server runs wholly on both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import BACK_ENDS, start_for
from tests.server.idserver import IdServer

ON_POSTGRES = {"test_activation.py", "test_online_pin.py", "test_lifecycle.py"}


@pytest.fixture(scope="session", params=BACK_ENDS)
def id_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdServer]:
    server = start_for(request, tmp_path_factory.mktemp("idserver") / "data")
    yield server
    server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        outside = Path(str(item.path)).parent != here or Path(str(item.path)).name in ON_POSTGRES
        (keep if outside or params.get("id_server") != "postgresql" else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
