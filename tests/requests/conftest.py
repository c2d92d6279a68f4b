from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.requests.standin import StandIn


@pytest.fixture
def standin(tmp_path: Path, vsc_home: Path) -> Iterator[StandIn]:
    """The stand-in request server on 127.0.0.1 (TLS and a plain relay port), for this test's VSC_HOME."""
    server = StandIn(tmp_path / "standin").start()
    yield server
    server.stop()


from tests.server.conftest import id_server  # noqa: E402, F401 - the real identity server, once per session
