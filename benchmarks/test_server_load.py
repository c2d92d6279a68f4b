"""The identity server under load (benchmarks/server_load.py): one row per back end and instance count."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.common import smoke
from benchmarks.server_load import Counts, measure
from vsc_provider.provisioning.device import DeviceKey

CONFIGS = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 4)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from tests.postgres import Postgres

    pg = Postgres()
    yield pg
    pg.stop()


@pytest.mark.parametrize(("backend", "instances"), CONFIGS, ids=[f"{b}-{n}" for b, n in CONFIGS])
def test_server_load(benchmark: Any, cluster: Any, backend: str, instances: int) -> None:
    counts = Counts(8, 16, 40, 4, 8, 4) if smoke(benchmark) else Counts()
    keys = [DeviceKey.generate() for _ in range(counts.device_keys)]
    url = cluster.database() if backend == "postgresql" else None
    result = benchmark.pedantic(measure, args=(instances, url, keys, counts), rounds=1)
    assert result["activation"]["failed"] == 0 and result["status"]["failed"] == 0
    assert result["pin"]["failed"] == 0 and result["pin"]["done"] == counts.pins, result["pin"]
    assert result["request"]["failed"] == 0 and result["request"]["done"] == counts.requests
    where = f"{backend} x{instances}"
    rows = []
    for phase, figures in result.items():
        common = {"client": "httpx async", "impl": "vsc server", "done": figures["done"]}
        rows.append({"op": f"server {phase}/s ({where})", "value": figures["ops_s"], "unit": "ops/s", **common})
        rows.append({"op": f"server {phase} p50 ({where})", "value": figures["p50_ms"], "unit": "ms", **common})
        rows.append({"op": f"server {phase} p99 ({where})", "value": figures["p99_ms"], "unit": "ms", **common})
    benchmark.extra_info.update(rows[0])
    benchmark.extra_info["more"] = rows[1:]
