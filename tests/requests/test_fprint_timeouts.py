"""The fingerprint look-up against a system bus that accepts the connection and never answers (silent_bus.py, a
real socket): at the authentication, or after it at the Hello. It gives up within its time limits, and the
approval falls back to asking the PIN; nothing waits for good."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.requests.silent_bus import SilentBus
from vsc_provider.requests import fprint

# The connection and the Hello each wait at most CONNECT_TIMEOUT_S; the join allows for a loaded machine.
BOUND_S = 2 * fprint.CONNECT_TIMEOUT_S + 20


def _in_a_thread(call: object) -> list[object]:
    """Run `call` in a thread joined with BOUND_S: its result or exception, or a failure if it still waits."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())  # type: ignore[operator]
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND_S)
    assert not thread.is_alive(), f"still waiting on a silent bus after {BOUND_S} s"
    return outcome


@pytest.mark.parametrize("answer_auth", [False, True], ids=["silent at once", "silent after the authentication"])
def test_a_bus_that_never_answers_leaves_no_fingerprint_and_no_hang(
    answer_auth: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SilentBus(tmp_path / "bus", answer_auth) as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        assert _in_a_thread(fprint.ready) == [False]  # what the approval page and the CLI ask first
        (refused,) = _in_a_thread(fprint.verify)  # what an approval by fingerprint asks
        assert isinstance(refused, fprint.Unavailable) and "does not answer" in str(refused)
        assert bus.connections  # it was reached: the time limits, not a refused connection, ended the wait
        if answer_auth:
            assert bus.said_hello.is_set()  # authenticated, and then the Hello went unanswered
