"""Requests end to end with real processes on 127.0.0.1: the identity server, `vsc agent`, `vsc requests`,
`vsc push-relay run`, `vsc open`; every result the relying party polls is verified by the server and again
here with `cryptography` (checks.py). Tests marked `slow` take tens of seconds each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import USER_PIN, run_vsc
from tests.relay.relay_process import Relay, start_relay
from tests.requests.agent_process import AgentProcess, agent
from tests.requests.real import activated, assert_approved_jws, new_rp, result, sign_request, wait_state
from tests.server.idserver import IdServer, start_server

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

ACCEPTING_POLICY = '''
"""Test policy: accepts every request (with the PIN the test gives) from the relying parties allowed."""
import os

from vsc_provider.requests.model import Decision


def policy(request):
    allowed = {n.strip() for n in os.environ.get("VSC_ALLOWED_RPS", "").split(",") if n.strip()}
    if request.rp in allowed:
        return Decision("accept", pin=os.environ["E2E_POLICY_PIN"], reason="allowed relying party")
    return Decision("ask")
'''


def stop(a: AgentProcess) -> None:
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(15) == 0, a.text()


def policy_env(tmp_path: Path, allowed: str) -> dict[str, str]:
    """VSC_POLICY naming docs/examples/rp_allowlist.py (rejects unlisted RPs) and an accepting test policy."""
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "accept_listed.py").write_text(ACCEPTING_POLICY)
    path = os.pathsep.join(p for p in (str(EXAMPLES), str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        "VSC_POLICY": "rp_allowlist:policy,accept_listed:policy",
        "VSC_ALLOWED_RPS": allowed,
        "E2E_POLICY_PIN": USER_PIN,
    }


def test_approved_while_the_agent_runs_the_rp_gets_a_verified_result(
    id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    user, _ = activated(id_server)
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(lambda: "watching 1 card" in a.text(), 20, "start")
        rid = sign_request(id_server, rp, user)
        a.wait_for(lambda: f"request {rid}" in a.text(), 5, "the pushed request")
        assert result(id_server, rp, rid)["state"] == "PENDING"
        run_vsc("requests", "approve", rid, "--pin", USER_PIN)
        assert_approved_jws(id_server, rp, rid)
        a.wait_for(lambda: f"request {rid} is gone" in a.text(), 10, "the gone event after the answer")
        stop(a)


def approve(rid: str) -> subprocess.CompletedProcess[str]:
    return run_vsc("requests", "approve", rid, "--pin", USER_PIN, check=False, timeout=300)


@pytest.mark.slow
def test_twenty_concurrent_requests_on_three_cards_approved_in_parallel_processes(
    id_server: IdServer, rp: str, vsc_home: Path
) -> None:
    users = [activated(id_server)[0] for _ in range(3)]
    data = {i: f"transfer {i}".encode() for i in range(20)}
    with ThreadPoolExecutor(10) as pool:  # the RP creates them at once too
        made = list(pool.map(lambda i: sign_request(id_server, rp, users[i % 3], data[i]), range(20)))
    listed = json.loads(run_vsc("requests", "list", "--json").stdout)
    assert sorted(r["id"] for r in listed) == sorted(made)
    assert len({r["card"] for r in listed}) == 3
    with ThreadPoolExecutor(20) as pool:  # 20 `vsc requests approve` processes at once on one card store
        outcomes = list(pool.map(approve, made))
    assert [o.returncode for o in outcomes] == [0] * 20, [o.stderr for o in outcomes if o.returncode]
    for i, rid in enumerate(made):
        assert_approved_jws(id_server, rp, rid, data[i])
    assert json.loads(run_vsc("requests", "list", "--json").stdout) == []


def test_an_agent_restarted_while_requests_wait_sees_all_of_them(
    id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    u1, _ = activated(id_server)
    u2, _ = activated(id_server)
    first = [sign_request(id_server, rp, u1), sign_request(id_server, rp, u2)]
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(lambda: all(f"request {r}" in a.text() for r in first), 20, "the first requests")
        a.proc.kill()  # not a clean stop
        a.proc.wait(10)
    later = [sign_request(id_server, rp, u1), sign_request(id_server, rp, u2, data=b"later")]
    with agent(tmp_path, "--no-page") as b:
        b.wait_for(lambda: all(f"request {r}" in b.text() for r in first + later), 20, "all four after the restart")
        run_vsc("requests", "approve", later[1], "--pin", USER_PIN)
        assert_approved_jws(id_server, rp, later[1], b"later")
        stop(b)
    assert {result(id_server, rp, r)["state"] for r in first + later[:1]} == {"PENDING"}


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IdServer, str, Relay]]:
    """A real `vsc push-relay run`, an identity server started with --push-relay naming it, an RP key there."""
    base = tmp_path_factory.mktemp("relayed")
    relay = start_relay(base / "relay")
    server = start_server(base / "data", args=("--push-relay", relay.url + "/"))
    try:
        yield server, new_rp(server, "Relayed shop"), relay
    finally:
        server.stop()
        relay.stop()


def test_through_the_push_relay_the_agent_is_notified_and_its_policy_approves(
    relayed: tuple[IdServer, str, Relay], vsc_home: Path, tmp_path: Path
) -> None:
    server, key, relay = relayed
    user, _ = activated(server)
    with agent(tmp_path, "--no-page", env=policy_env(tmp_path, "Relayed shop")) as a:
        relay.wait_listeners(1, timeout=20)  # the agent listens on the relay, for its one card
        rid = sign_request(server, key, user)
        a.wait_for(lambda: f"policy accepts request {rid}" in a.text(), 15, "the policy's approval")
        wait_state(server, key, rid, "APPROVED")
        assert_approved_jws(server, key, rid)
        assert "push connection failed" not in a.text()
        stop(a)
    relay.wait_listeners(0)


def test_policy_hook_named_in_vsc_policy_accepts_and_rejects_in_the_real_agent(
    id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    stranger = new_rp(id_server, f"Stranger {os.getpid()} {tmp_path.name}")
    user, _ = activated(id_server)
    with agent(tmp_path, "--no-page", env=policy_env(tmp_path, "ACME")) as a:
        a.wait_for(lambda: "watching 1 card" in a.text(), 20, "start")
        good = sign_request(id_server, rp, user)
        bad = sign_request(id_server, stranger, user)
        a.wait_for(lambda: f"policy rejects request {bad}" in a.text(), 15, "the rejection")
        a.wait_for(lambda: f"policy accepts request {good}" in a.text(), 15, "the acceptance")
        assert "is not on this machine's list" in a.text()
        wait_state(id_server, stranger, bad, "REJECTED")
        wait_state(id_server, rp, good, "APPROVED")
        assert_approved_jws(id_server, rp, good)
        assert USER_PIN not in a.text()
        stop(a)


def test_vsc_open_a_request_link_gives_the_running_agents_page_for_it(
    id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    import httpx

    user, _ = activated(id_server)
    rid = sign_request(id_server, rp, user)
    with agent(tmp_path) as a:
        page = a.page_url(vsc_home, rid)
        no_desktop = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
        out = run_vsc("open", f"personal://request?id={rid}&server={id_server.url}", env=no_desktop).stdout
        assert out.strip() == f"{page}requests/{rid}"
        shown = httpx.get(out.strip(), timeout=30)
        assert shown.status_code == 200 and "120.00 EUR to ACME" in shown.text
        stop(a)
    # with no agent running, one line saying so
    gone = run_vsc("open", f"personal://request?id={rid}", env={"DISPLAY": ""}, check=False)
    assert gone.returncode == 1 and len(gone.stderr.strip().splitlines()) == 1, gone.stderr
