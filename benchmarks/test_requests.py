"""Requests (issue 9) on loopback with real processes: the identity server (tests/server/idserver.py), a card
activated from it, `vsc agent`. Three figures:

- push latency: from the relying party's POST /rp/v1/requests to the agent's log line for the request (its
  logging timestamp, 1 ms resolution), one request at a time, each cancelled once seen; median and p99;
- approvals per second end to end with the PIN check: CardRequests.approve (what `vsc requests approve` runs,
  without the process start) over pending sign requests on a local-PIN card, and over auth requests on a
  server-checked card (the server's PIN delay is the tests' 0.05 s); every result then polled as APPROVED;
- server create+poll per second: one relying-party connection creating a request and reading it back,
  sequentially (the device's pending bound of 64 is reset by cancelling between rounds, untimed).
"""

from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import smoke
from tests.conftest import USER_PIN
from tests.relay.relay_process import summary
from tests.requests.agent_process import agent
from tests.requests.real import activated, create, new_rp, result, rp_call, sign_request
from tests.server.idserver import IdServer, start_server
from vsc_provider.provisioning import wire

CLIENT = "loopback"
SEEN = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* request (\S+) from ", re.M)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IdServer, str]]:
    """The identity server, an RP key, and VSC_HOME pointing at a fresh card store for this module."""
    base = tmp_path_factory.mktemp("requests-bench")
    saved = {k: os.environ.get(k) for k in ("VSC_HOME", "VSC_PIN_DELAY_BASE")}
    os.environ["VSC_HOME"], os.environ["VSC_PIN_DELAY_BASE"] = str(base / "home"), "0.2"
    server = start_server(base / "data")
    try:
        yield server, new_rp(server, "Bench")
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def seen_times(log: str) -> dict[str, float]:
    """request id -> when the agent logged it (epoch seconds, from the local-time logging stamp)."""
    out = {}
    for stamp, rid in SEEN.findall(log):
        out.setdefault(rid, datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def push_latencies(server: IdServer, key: str, user: str, log: Any, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.time()
        rid = sign_request(server, key, user)
        deadline = time.monotonic() + 10
        while (seen := seen_times(log()).get(rid)) is None:
            assert time.monotonic() < deadline, f"the agent did not see {rid}"
            time.sleep(0.002)
        out.append(max(seen - start, 0.0) * 1000)
        rp_call(server, key, "POST", f"/rp/v1/requests/{rid}/cancel")
    return out


def test_push_latency_create_to_agent(benchmark: Any, served: tuple[IdServer, str], tmp_path: Path) -> None:
    server, key = served
    user, _ = activated(server)
    with agent(tmp_path, "--no-page") as a:
        a.wait_for(lambda: "watching" in a.text(), 30, "the agent")
        time.sleep(0.5)  # its push stream open
        count = 5 if smoke(benchmark) else 50
        latencies = benchmark.pedantic(push_latencies, args=(server, key, user, a.text, count), rounds=1)
    figures = summary(latencies)
    op = "request create -> seen by the agent"
    common = {"client": CLIENT, "impl": "vsc", "unit": "ms", "requests": len(latencies)}
    benchmark.extra_info.update(op=f"{op}, median (ms)", value=figures["median_ms"], **common)
    benchmark.extra_info["more"] = [{"op": f"{op}, p99 (ms)", "value": figures["p99_ms"], **common}]


def approvals_per_second(server: IdServer, key: str, rids: list[str]) -> float:
    from vsc_provider.requests.client import CardRequests

    source = CardRequests()
    start = time.perf_counter()
    for rid in rids:
        source.approve(rid, USER_PIN)
    rate = len(rids) / (time.perf_counter() - start)
    states = {result(server, key, rid)["state"] for rid in rids}
    assert states == {"APPROVED"}, states
    return rate


@pytest.mark.parametrize("profile", ["default", "online"])
def test_approvals_per_second(benchmark: Any, served: tuple[IdServer, str], profile: str) -> None:
    server, key = served
    user, _ = activated(server, profile)
    count = 2 if smoke(benchmark) else (20 if profile == "default" else 10)
    if profile == "default":
        rids = [sign_request(server, key, user, data=f"bench {i}".encode()) for i in range(count)]
        what = "local PIN, sign ES256"
    else:
        rids = [create(server, key, user, kind="auth", alg="RS256")["id"] for _ in range(count)]
        what = "server-checked PIN, auth RS256"
    rate = benchmark.pedantic(approvals_per_second, args=(server, key, rids), rounds=1)
    benchmark.extra_info.update(
        op=f"requests approved per second ({what})", value=rate, client=CLIENT, impl="vsc", unit="ops/s"
    )


def create_and_poll(server: IdServer, key: str, user: str, rounds: int, per_round: int) -> float:
    body = {"user": user, "ttl": 300, "kind": "sign", "alg": "ES256", "data": wire.b64u(b"bench")}
    headers = {"Authorization": f"Bearer {key}"}
    spent, done = 0.0, 0
    with server.client() as c:
        for _ in range(rounds):
            made = []
            start = time.perf_counter()
            for _ in range(per_round):
                rid = c.call("POST", "/rp/v1/requests", body, headers=headers)["id"]
                assert c.call("GET", f"/rp/v1/requests/{rid}", headers=headers)["state"] == "PENDING"
                made.append(rid)
            spent += time.perf_counter() - start
            done += per_round
            for rid in made:
                c.call("POST", f"/rp/v1/requests/{rid}/cancel", {}, headers=headers)
    return done / spent


def test_server_create_and_poll_per_second(benchmark: Any, served: tuple[IdServer, str]) -> None:
    server, key = served
    user, _ = activated(server, "light")
    rounds, per_round = (1, 5) if smoke(benchmark) else (4, 50)
    rate = benchmark.pedantic(create_and_poll, args=(server, key, user, rounds, per_round), rounds=1)
    benchmark.extra_info.update(
        op="server request create + poll per second (one RP connection)",
        value=rate,
        client=CLIENT,
        impl="vsc",
        unit="ops/s",
    )
