"""`vsc agent` as a real process against the stand-in request server (standin.py, a Starlette SSE endpoint on
127.0.0.1): push delivery, reconnect with backoff, the relay, agent.json, a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import SO_PIN, USER_PIN
from tests.requests.standin import StandIn
from vsc_provider.relay.client import sse_events
from vsc_provider.requests.agent import Backoff


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


@contextmanager
def agent(tmp_path: Path, *args: str) -> Iterator[AgentProcess]:
    log = tmp_path / f"agent-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vsc_provider.cli", "agent", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": ""},
        )
    try:
        yield AgentProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_backoff_doubles_from_half_a_second_to_thirty_and_restarts_after_a_connection() -> None:
    b = Backoff()
    assert [b.failed() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    b.connected()
    assert b.failed() == 0.5


def test_sse_parser_reads_events_and_skips_comments() -> None:
    lines = [
        ": keep-alive",
        "",
        "event: request",
        "data: a.b.c",
        "",
        "data: x",
        "data: y",
        "",
        "event: gone",
        "data: r1",
        "",
    ]
    assert list(sse_events(lines)) == [("request", "a.b.c"), ("message", "x\ny"), ("gone", "r1")]


def test_agent_reconnects_with_backoff_then_receives_pushed_requests(standin: StandIn, tmp_path: Path) -> None:
    _, device = standin.bind_card("Pushed", USER_PIN, SO_PIN, [("sign", "p256", False)])
    standin.refuse_pushes = 4
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(lambda: len(standin.push_attempts) >= 5, 30, "five push attempts")
        gaps = [y - x for x, y in zip(standin.push_attempts, standin.push_attempts[1:], strict=False)][:4]
        for gap, wanted in zip(gaps, [0.5, 1.0, 2.0, 4.0], strict=True):
            assert wanted * 0.95 <= gap <= wanted + 0.75, gaps
        # connected: a new request arrives over the stream and is left to the user (no policy hook here)
        rid = standin.make(device)
        a.wait_for(lambda: f"request {rid}" in a.text() and "request waiting" in a.text(), 10, "the notification")
        # decided elsewhere: the server says it is gone
        standin.requests[rid].state = "CANCELLED"
        a.wait_for(lambda: f"request {rid} is gone" in a.text(), 10, "the gone event")
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(15) == 0
    assert "agent" in a.text() and "stopped" in a.text()


def test_a_stream_the_server_ends_is_reopened_at_once(standin: StandIn, tmp_path: Path) -> None:
    standin.bind_card("Short", USER_PIN, SO_PIN, [("sign", "p256", False)])
    standin.stream_seconds = 1.2
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(lambda: len(standin.push_attempts) >= 3, 20, "three connections")
        gaps = [y - x for x, y in zip(standin.push_attempts, standin.push_attempts[1:], strict=False)]
        assert all(1.2 <= g < 2.5 for g in gaps[:2]), gaps  # the stream's length, no backoff added
        a.proc.send_signal(signal.SIGINT)
        assert a.proc.wait(15) == 0


def test_agent_json_is_private_and_removed_at_exit_and_every_card_is_watched(
    standin: StandIn, vsc_home: Path, tmp_path: Path
) -> None:
    _, d1 = standin.bind_card("One", USER_PIN, SO_PIN, [("sign", "p256", False)])
    _, d2 = standin.bind_card("Two", USER_PIN, SO_PIN, [("sign", "p256", False)])
    early = standin.make(d2)  # queued while the agent was away
    path = vsc_home / "agent.json"
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(path.exists, 20, "agent.json")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, a.text()
        assert json.loads(path.read_text()) == {"pid": a.proc.pid, "url": None}, a.text()
        a.wait_for(lambda: f"request {early}" in a.text(), 10, "the queued request")
        late = standin.make(d1)
        a.wait_for(lambda: f"request {late}" in a.text(), 10, "the pushed request")
        assert "watching 2 card(s)" in a.text()
        # a card activated while the agent runs is watched too
        _, d3 = standin.bind_card("Three", USER_PIN, SO_PIN, [("sign", "p256", False)])
        third = standin.make(d3)
        a.wait_for(lambda: f"request {third}" in a.text(), 15, "the new card's request")
        a.proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        assert a.proc.wait(15) == 0, a.text()
        assert time.monotonic() - stopping < 6.0, a.text()  # threads get at most 5 s to finish
    assert not path.exists()


def test_with_a_relay_the_agent_listens_there_and_fetches_on_a_notification(standin: StandIn, tmp_path: Path) -> None:
    from tests.relay.relay_process import start_relay

    relay = start_relay(tmp_path / "relay")
    try:
        _, device = standin.bind_card("Relayed", USER_PIN, SO_PIN, [("sign", "p256", False)])
        standin.relay_url = relay.url
        with agent(tmp_path, "--no-page") as a:
            relay.wait_listeners(1, timeout=20)
            rid = standin.make(device)
            a.wait_for(lambda: f"request {rid}" in a.text(), 10, "the request after the relay's notification")
            assert standin.relay_posts == [1]  # the relay reached the one listener: this agent
            assert standin.push_attempts == []  # the server's own stream was never used
            a.proc.send_signal(signal.SIGTERM)
            assert a.proc.wait(15) == 0
        relay.wait_listeners(0)
    finally:
        relay.stop()


def test_once_fetches_acts_and_exits(standin: StandIn, tmp_path: Path) -> None:
    _, device = standin.bind_card("Once", USER_PIN, SO_PIN, [("sign", "p256", False)])
    rid = standin.make(device)
    with agent(tmp_path, "--once") as a:
        assert a.proc.wait(30) == 0
        assert f"request {rid}" in a.text() and "request waiting" in a.text()


def test_agent_serves_the_approval_page_and_an_approval_there_reaches_the_server(
    standin: StandIn, vsc_home: Path, tmp_path: Path
) -> None:
    import re

    import httpx

    _, device = standin.bind_card("Paged", USER_PIN, SO_PIN, [("sign", "p256", False)])
    rid = standin.make(device, rp={"name": "Page Shop"})
    with agent(tmp_path) as a:
        path = vsc_home / "agent.json"
        a.wait_for(lambda: path.exists() and f"request {rid}" in a.text(), 20, "agent.json and the request")
        url = json.loads(path.read_text())["url"]
        assert url.startswith("http://127.0.0.1:")
        origin, token = url.rstrip("/").rsplit("/", 1)
        with httpx.Client(base_url=origin, timeout=30) as http:
            assert rid in http.get(f"/{token}/").text
            page = http.get(f"/{token}/requests/{rid}").text
            assert "Page Shop" in page and "Pay 12.50 EUR to Shop" in page
            form = {
                name: re.search(rf'name="{name}" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
                for name in ("csrf", "shown")
            }
            answer = http.post(
                f"/{token}/requests/{rid}",
                data={**form, "decision": "approve", "pin": USER_PIN},
                headers={"Origin": origin},
            )
            assert answer.status_code == 200, answer.text
        assert standin.answers[-1]["id"] == rid and standin.answers[-1]["verified"] is True
        assert USER_PIN not in a.text()
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(15) == 0


def test_policy_hook_rejects_accepts_or_asks_per_request(standin: StandIn) -> None:
    from vsc_provider.requests.agent import Agent, run_once
    from vsc_provider.requests.model import Decision, PendingRequest

    _, device = standin.bind_card("Policed", USER_PIN, SO_PIN, [("sign", "p256", False)])
    bad = standin.make(device, rp={"name": "Unknown RP"})
    good = standin.make(device, rp={"name": "Shop"})
    wrong_pin = standin.make(device, rp={"name": "Shop"}, metadata=[{"type": "text", "label": "pin", "data": "bad"}])
    asked = standin.make(device, rp={"name": "Bank"})
    short = standin.make(device, rp={"name": "Bank"}, exp=int(time.time()) + 2)
    told: list[str] = []

    def policy(request: PendingRequest) -> Decision:
        if request.rp == "Unknown RP":
            return Decision("reject", reason="unknown relying party")
        if request.rp == "Shop":
            pin = "000000" if request.metadata[0].data == b"bad" else USER_PIN
            return Decision("accept", pin=pin, reason="known shop")
        return Decision("ask")

    source = Agent(policy=policy, tell=lambda r: told.append(r.id))
    left = run_once(source)
    decided = {a["id"]: a for a in standin.answers}
    assert decided[bad]["decision"] == "reject"
    assert decided[good]["decision"] == "approve" and decided[good]["verified"] is True
    assert wrong_pin not in decided  # a wrong PIN from the policy leaves it pending
    assert told == [asked, short]
    assert {r.id for r in left} == {wrong_pin, asked, short}
    time.sleep(max(standin.requests[short].claims["exp"] - time.time(), 0) + 0.1)
    with pytest.raises(Exception, match=f"request {short} expired"):
        source.approve(short, USER_PIN)
    assert short not in {r.id for r in source.pending()}
    # the page's RequestSource: approve and reject what is left
    source.approve(asked, USER_PIN)
    source.reject(wrong_pin)
    assert source.pending() == []
    assert {a["id"]: a["decision"] for a in standin.answers}[asked] == "approve"
    with pytest.raises(Exception, match=f"no pending request {asked}"):
        source.approve(asked, USER_PIN)


def test_the_agent_refuses_to_start_inside_a_host_that_loaded_the_pkcs11_module(
    module_path: str, vsc_home: Path
) -> None:
    script = f"""
import sys, pkcs11
lib = pkcs11.lib({module_path!r})
assert "vsc_provider._pkcs11" in sys.modules
from vsc_provider.requests.agent import Agent
from vsc_provider.requests.model import Decision
try:
    Agent(policy=lambda r: Decision("ask")).start()
except RuntimeError as exc:
    print("refused:", exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "refused: the agent runs as a process of its own" in out.stdout, out.stderr
