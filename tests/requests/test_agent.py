"""`vsc agent` as a real process with real cards activated from the real identity server: agent.json, every
card watched, requests queued while it was away, --once, the approval page, the policy hook, a clean stop on
SIGTERM/SIGINT. The relay and agent restarts are in test_end_to_end.py.

Two tests need a server that misbehaves (refuses push connections to show the backoff; ends every stream
early): those run against the stand-in's SSE endpoint (standin.py), which the real server cannot be made to
do."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SO_PIN, USER_PIN, run_vsc
from tests.requests.agent_process import agent
from tests.requests.real import activated, assert_approved_jws, create, result, sign_request
from tests.requests.standin import StandIn
from tests.server.idserver import IdServer
from vsc_provider.relay.client import sse_events
from vsc_provider.requests.agent import Backoff


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
    """Against the stand-in: it refuses the first four push connections, which the real server never does."""
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
    """Against the stand-in: it ends every stream after 1.2 s (the real server's streams last ten minutes)."""
    standin.bind_card("Short", USER_PIN, SO_PIN, [("sign", "p256", False)])
    standin.stream_seconds = 1.2
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(lambda: len(standin.push_attempts) >= 3, 20, "three connections")
        gaps = [y - x for x, y in zip(standin.push_attempts, standin.push_attempts[1:], strict=False)]
        assert all(1.2 <= g < 2.5 for g in gaps[:2]), gaps  # the stream's length, no backoff added
        a.proc.send_signal(signal.SIGINT)
        assert a.proc.wait(15) == 0


def test_agent_json_is_private_and_removed_at_exit_and_every_card_is_watched(
    id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    u1, _ = activated(id_server)
    u2, _ = activated(id_server)
    early = sign_request(id_server, rp, u2)  # queued while the agent was away
    path = vsc_home / "agent.json"
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(path.exists, 20, "agent.json")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, a.text()
        assert json.loads(path.read_text()) == {"pid": a.proc.pid, "url": None}, a.text()
        a.wait_for(lambda: f"request {early}" in a.text(), 10, "the queued request")
        a.wait_for(lambda: "watching 2 card(s)" in a.text(), 10, "both cards")
        late = sign_request(id_server, rp, u1)
        a.wait_for(lambda: f"request {late}" in a.text(), 10, "the pushed request")
        # a card activated while the agent runs is watched too
        u3, _ = activated(id_server)
        third = sign_request(id_server, rp, u3)
        a.wait_for(lambda: f"request {third}" in a.text(), 15, "the new card's request")
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(15) == 0, a.text()  # bounded: its threads get at most 5 s to finish
        assert f"agent {a.proc.pid} stopped" in a.text(), a.text()
    assert not path.exists()


def test_once_fetches_acts_and_exits(id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path) -> None:
    user, _ = activated(id_server)
    rid = sign_request(id_server, rp, user)
    with agent(tmp_path, "--once") as a:
        assert a.proc.wait(30) == 0
        assert f"request {rid}" in a.text() and "request waiting" in a.text()


def test_agent_serves_the_approval_page_and_an_approval_there_reaches_the_server(
    id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    import re

    import httpx

    user, _ = activated(id_server)
    rid = sign_request(id_server, rp, user)
    with agent(tmp_path) as a:
        url = a.page_url(vsc_home, rid)
        assert url.startswith("http://127.0.0.1:")
        origin, token = url.rstrip("/").rsplit("/", 1)
        with httpx.Client(base_url=origin, timeout=30) as http:
            assert rid in http.get(f"/{token}/").text
            page = http.get(f"/{token}/requests/{rid}").text
            assert "ACME" in page and "120.00 EUR to ACME" in page
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
        assert_approved_jws(id_server, rp, rid)
        assert USER_PIN not in a.text()
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(15) == 0
    # the approval's login, signature and logout are the agent's in the card's audit log
    entries = json.loads(run_vsc("audit", "list", "--card", user, "--json").stdout)["entries"]
    by_agent = [e["kind"] for e in entries if e["origin"].startswith("agent/") and f"[{a.proc.pid}]" in e["origin"]]
    assert by_agent == ["login-user", "sign", "logout-user"], entries


def test_policy_hook_rejects_accepts_or_asks_per_request(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    from tests.requests.real import new_rp
    from vsc_provider.requests.agent import Agent, run_once
    from vsc_provider.requests.model import Decision, PendingRequest

    unknown = new_rp(id_server, "Unknown " + str(time.monotonic_ns()))
    user, _ = activated(id_server)
    bad = sign_request(id_server, unknown, user)
    good = sign_request(id_server, rp, user, data=b"good")
    wrong_pin = create(id_server, rp, user, kind="auth", metadata=[{"type": "text", "label": "pin", "data": "bad"}])
    asked = create(id_server, rp, user, kind="auth")["id"]
    short = create(id_server, rp, user, kind="auth", ttl=10)["id"]
    told: list[str] = []

    def policy(request: PendingRequest) -> Decision:
        if request.rp != "ACME":
            return Decision("reject", reason="unknown relying party")
        if request.kind == "sign":
            return Decision("accept", pin=USER_PIN, reason="a known shop's transfer")
        if request.metadata and request.metadata[0].data == b"bad":
            return Decision("accept", pin="000000", reason="a wrong PIN")
        return Decision("ask")

    source = Agent(policy=policy, tell=lambda r: told.append(r.id))
    left = run_once(source)
    assert result(id_server, unknown, bad)["state"] == "REJECTED"
    assert_approved_jws(id_server, rp, good, b"good")
    assert result(id_server, rp, wrong_pin["id"])["state"] == "PENDING"  # a wrong PIN from the policy leaves it
    assert sorted(told) == sorted([asked, short])
    assert {r.id for r in left} == {wrong_pin["id"], asked, short}
    expires = next(r.expires for r in left if r.id == short)
    time.sleep(max(expires - time.time(), 0) + 0.1)
    with pytest.raises(Exception, match=f"request {short} expired"):
        source.approve(short, USER_PIN)
    assert short not in {r.id for r in source.pending()}
    # the page's RequestSource: approve and reject what is left
    source.approve(asked, USER_PIN)
    source.reject(wrong_pin["id"])
    assert source.pending() == []
    assert result(id_server, rp, asked)["state"] == "APPROVED"
    assert result(id_server, rp, wrong_pin["id"])["state"] == "REJECTED"
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
