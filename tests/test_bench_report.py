"""The benchmark report's verdicts (benchmarks/report.py), from a run file shaped like pytest-benchmark's."""

from __future__ import annotations

from typing import Any

from benchmarks import report


def _bench(op: str, client: str, impl: str, value: float | None, unit: str = "us", failed: str = "") -> dict[str, Any]:
    info: dict[str, Any] = {"op": op, "client": client, "impl": impl, "unit": unit}
    if failed:
        info["failed"] = failed
    elif value is not None:
        info["value"] = value
    return {"extra_info": info, "stats": {"median": 0.0}}


def _rows(*benches: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {(r[0], r[1]): r for r in report.table_rows({"benchmarks": list(benches)})}


def test_ratio_targets_against_softhsm_and_raw() -> None:
    op = "sign P-256 ECDSA"
    rows = _rows(_bench(op, "C", "raw", 50.0), _bench(op, "C", "softhsm", 130.0), _bench(op, "C", "vsc", 60.0))
    row = rows[(op, "C")]
    assert row[6] == "0.46" and row[7] == "1.20"
    assert row[8].endswith(": met")
    slow = _rows(_bench(op, "C", "raw", 50.0), _bench(op, "C", "softhsm", 130.0), _bench(op, "C", "vsc", 70.0))
    assert slow[(op, "C")][8].endswith(": MISSED")  # 1.4x raw


def test_absolute_target_the_reference_module_misses_too_is_marked_so() -> None:
    op = "cold start: process start to first C_GetSlotList (ms)"
    rows = _rows(
        _bench(op, "C", "softhsm", 40.0, "ms"),
        _bench(op, "C", "vsc", 120.0, "ms"),
        _bench(op, "python-pkcs11", "softhsm", 120.0, "ms"),
        _bench(op, "python-pkcs11", "vsc", 150.0, "ms"),
    )
    assert rows[(op, "C")][8].endswith(": MISSED")
    assert "SoftHSM misses it too here (120)" in rows[(op, "python-pkcs11")][8]


def test_failed_cases_are_listed_and_do_not_hide_the_table() -> None:
    op = "RSA-2048 SHA256_RSA_PKCS throughput (ops/s), 2 threads"
    run = {
        "benchmarks": [
            _bench(op, "C", "vsc", 2000.0, "ops/s"),
            _bench(op, "C", "softhsm", None, "ops/s", failed="worker exited 1: SIGSEGV"),
        ]
    }
    rows = report.table_rows(run)
    assert rows[0][4] == "failed" and rows[0][5] == "2,000"
    assert report.failures(run) == [f"- {op} (C, softhsm) failed: worker exited 1: SIGSEGV"]


def test_a_scaling_target_the_raw_floor_misses_too_is_marked_machine_bound() -> None:
    op = "RSA-2048 throughput, 2 threads / 1 thread (x)"
    rows = _rows(
        _bench(op, "cryptography", "raw", 1.6, "x"),
        _bench(op, "C", "softhsm", 1.5, "x"),
        _bench(op, "C", "vsc", 1.55, "x"),
    )
    assert "machine-bound (raw reaches 1.60 here)" in rows[(op, "C")][8]
    rows = _rows(
        _bench(op, "cryptography", "raw", 1.95, "x"),
        _bench(op, "C", "softhsm", 1.9, "x"),
        _bench(op, "C", "vsc", 1.55, "x"),
    )
    assert rows[(op, "C")][8].endswith(": MISSED")
