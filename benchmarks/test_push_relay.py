"""The push relay alone: from the identity server's post_notification call to the listening device's
client.listen yielding the notification, one post at a time, through a real `vsc push-relay run` on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import smoke
from tests.relay.relay_process import post_latencies, start_relay, summary

OP = "push relay post -> listener"


def test_push_relay_latency(benchmark: Any, tmp_path: Path) -> None:
    """200 posts (each a new connection, as the server makes them): the median and p99 rows, in ms."""
    relay = start_relay(tmp_path)
    try:
        latencies = benchmark.pedantic(post_latencies, args=(relay, 20 if smoke(benchmark) else 200), rounds=1)
    finally:
        relay.stop()
    figures = summary(latencies)
    common = {"client": "httpx", "impl": "vsc", "unit": "ms", "posts": len(latencies)}
    benchmark.extra_info.update(op=f"{OP}, median (ms)", value=figures["median_ms"], **common)
    benchmark.extra_info["more"] = [{"op": f"{OP}, p99 (ms)", "value": figures["p99_ms"], **common}]
