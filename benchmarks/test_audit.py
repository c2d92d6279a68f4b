"""The audit log's cost on C_Sign (token/audit_writer.py). A signature writes one entry into the process's
journal, a file mapped in memory, which the median rows of test_sign.py include; every CAPACITY signatures
the C_Sign that finds the journal full also folds it: hashes its entries into the chain and stores them in
one transaction, which a median never reaches. This row times those folds in the module loaded here (the
fold of a full journal, and its share per signature), next to the median C_SignInit+C_Sign of the same run
and the raw floor. Means are not used: this VM's other tenants move them by 2x.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from benchmarks.cases import SIGN_CASES
from benchmarks.common import ROUNDS, median_us, python_client, report_rounds, smoke


def test_sign_audit_fold(benchmark: Any, sessions: dict[str, Any], raw_keys: dict[str, Any]) -> None:
    import pkcs11

    from vsc_provider.pkcs11.state import LIB
    from vsc_provider.token import audit_journal

    case = next(c for c in SIGN_CASES.values() if c.kind == "p256" and c.mech == "ECDSA")
    key = sessions["vsc"].get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=case.kind)
    sign = partial(case.pkcs11, key)
    raw = partial(case.raw, raw_keys[case.kind])
    log = LIB.require().audit
    folds: list[float] = []
    fold = log._flush_locked
    full = audit_journal.CAPACITY

    def timed_fold(look_first: bool = True, busy_ms: int | None = None) -> None:
        t0 = time.perf_counter_ns()
        fold(look_first, busy_ms)
        folds.append((time.perf_counter_ns() - t0) / 1000)

    rounds = 1 if smoke(benchmark) else ROUNDS
    journals = 1 if smoke(benchmark) else 4
    figures: dict[tuple[str, str], list[float]] = {}

    def run() -> None:
        log._flush_locked = timed_fold  # type: ignore[method-assign]
        try:
            for _ in range(rounds):
                folds.clear()
                figures.setdefault((case.op, "vsc"), []).append(median_us(sign, journals * full))
                figures.setdefault((case.op, "raw"), []).append(median_us(raw, journals * full))
                ordered = sorted(folds)
                assert ordered, "no journal was folded: the signatures did not reach the journal"
                middle = ordered[len(ordered) // 2]
                figures.setdefault((f"audit fold of a full journal ({full} entries)", "vsc"), []).append(middle)
                figures.setdefault(("audit fold per signature", "vsc"), []).append(middle / full)
        finally:
            del log._flush_locked

    benchmark.pedantic(run, rounds=1)
    report_rounds(benchmark, figures, python_client)
