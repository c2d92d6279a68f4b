"""`vsc agent` as a real process for tests: its log in a file, waiting on what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class AgentProcess:
    def __init__(self, proc: subprocess.Popen[str], log: Path) -> None:
        self.proc, self.log = proc, log

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, what: Callable[[], bool], timeout: float = 20.0, why: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            assert self.proc.poll() is None, f"the agent exited: {self.text()}"
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {why}: agent log:\n{self.text()}")

    def page_url(self, home: Path, request_id: str, timeout: float = 20.0) -> str:
        """The approval page's URL from HOME/agent.json, once the agent has written it and fetched REQUEST_ID."""
        info = home / "agent.json"
        self.wait_for(
            lambda: info.exists() and f"request {request_id}" in self.text(), timeout, "agent.json and the request"
        )
        return str(json.loads(info.read_text())["url"])


@contextmanager
def agent(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[AgentProcess]:
    log = tmp_path / f"agent-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vsc_provider.cli", "agent", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": "", **(env or {})},
        )
    try:
        yield AgentProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
