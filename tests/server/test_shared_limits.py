"""The rate limits' buckets in PostgreSQL (server/limits_shared.py), in process: takes raced from two pools (as
two instances) spend each token once, a refusal says when to come back, and rows of buckets that are full
again are purged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from vsc_provider.server import limits_shared
from vsc_provider.server.db import Database, open_database
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.limits_shared import SharedBuckets


@pytest.fixture
def two(postgres: Any, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    url = postgres.database()
    first, second = open_database(tmp_path, url), open_database(tmp_path, url)
    yield first, second
    first.close()
    second.close()


def _buckets(db: Database, rate: float, burst: float) -> SharedBuckets:
    return SharedBuckets(db.backend, "requests", rate, burst, "rate_limited", "slow down")


def _took(bucket: SharedBuckets, client: str) -> bool | float:
    try:
        bucket.take(client)
    except ProtocolError as exc:
        assert (exc.status, exc.error) == (429, "rate_limited")
        return float(exc.extra["retry_after"])
    return True


def _rows(db: Database) -> list[Any]:
    with db.backend.read() as tx:
        return tx.execute("SELECT client FROM rate_buckets ORDER BY client").fetchall()


def test_takes_raced_from_two_pools_spend_each_token_once(two: tuple[Database, Database]) -> None:
    pools = [_buckets(db, 0.001, 25) for db in two]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda n: _took(pools[n % 2], "10.0.0.1"), range(80), timeout=60))
    assert results.count(True) == 25
    waits = [r for r in results if r is not True]
    assert len(waits) == 55 and all(900 < w <= 1000 for w in waits)  # a whole token at 0.001/s: ~1000 s
    pools[1].check("10.0.0.2")  # another address is untouched
    with pytest.raises(ProtocolError):
        pools[0].check("10.0.0.1")


def test_tokens_flow_back_at_the_rate(two: tuple[Database, Database]) -> None:
    first, second = (_buckets(db, 20.0, 2) for db in two)
    assert [_took(first, "c"), _took(second, "c")] == [True, True]
    refused = _took(first, "c")
    assert refused is not True and 0 < refused <= 0.05
    time.sleep(0.12)  # two tokens at 20/s
    assert [_took(second, "c"), _took(first, "c")] == [True, True]


def test_rows_of_full_buckets_are_purged(two: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch) -> None:
    db = two[0]
    bucket = _buckets(db, 100.0, 5)  # full again 0.05 s after a take
    for n in range(40):
        bucket.take(f"client{n}")
    assert len(_rows(db)) == 40
    time.sleep(0.1)
    monkeypatch.setattr(limits_shared, "PURGE_EVERY", 0.0)
    bucket.take("last")
    assert [r[0] for r in _rows(db)] == ["last"]
    other = SharedBuckets(db.backend, "codes", 0.001, 5, "too_many_codes", "wait")
    other.take("kept")  # a slow bucket's row stays while it is not full
    bucket.take("last")
    assert [r[0] for r in _rows(db)] == ["kept", "last"]
