from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.requests.real import new_rp
from tests.requests.standin import StandIn
from tests.server.conftest import id_server  # noqa: F401 - the real identity server, once per session
from tests.server.idserver import IdServer


@pytest.fixture
def standin(tmp_path: Path, vsc_home: Path) -> Iterator[StandIn]:
    """The misbehaving request server (standin.py) on 127.0.0.1, for this test's VSC_HOME: only for what the
    real server never does (refused pushes, short streams, forged or tampered documents, refused answers)."""
    server = StandIn(tmp_path / "standin").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rp(id_server: IdServer) -> str:  # noqa: F811 - the fixture imported above
    """The session's relying party 'ACME' on the real identity server: its API key."""
    return new_rp(id_server, "ACME")
