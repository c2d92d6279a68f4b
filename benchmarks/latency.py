"""What the server load drivers report of a phase: throughput and latency percentiles, plus their counts."""

from __future__ import annotations

import statistics


def phase_figures(latencies_ms: list[float], elapsed_s: float, **counts: int) -> dict[str, float]:
    """ops/s over the phase, p50 and p99 in ms, how many calls were done, and the COUNTS given."""
    ordered = sorted(latencies_ms)
    return {
        "ops_s": len(ordered) / elapsed_s,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "done": float(len(ordered)),
        **{name: float(value) for name, value in counts.items()},
    }
