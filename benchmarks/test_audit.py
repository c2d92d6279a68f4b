"""The audit log's cost on C_Sign (token/audit.py). A signature appends an entry in memory, which the median
rows of test_sign.py include; every BATCH signatures the C_Sign that fills the batch also hashes it into the
chain and writes it in one store transaction, which a median never reaches. This row times those writes in
the module loaded here (the batch write, and its share per signature), next to the median C_SignInit+C_Sign
of the same run and the raw floor. Means are not used: this VM's other tenants move them by 2x.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from benchmarks.cases import SIGN_CASES
from benchmarks.common import ROUNDS, median_us, python_client, report_rounds, smoke


def test_sign_audit_batch_write(benchmark: Any, sessions: dict[str, Any], raw_keys: dict[str, Any]) -> None:
    import pkcs11

    from vsc_provider.pkcs11.state import LIB
    from vsc_provider.token import audit

    case = next(c for c in SIGN_CASES.values() if c.kind == "p256" and c.mech == "ECDSA")
    key = sessions["vsc"].get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=case.kind)
    sign = partial(case.pkcs11, key)
    raw = partial(case.raw, raw_keys[case.kind])
    log = LIB.require().audit
    writes: list[float] = []
    write_batch = log.flush

    def timed_flush(wait: bool = True) -> None:
        t0 = time.perf_counter_ns()
        write_batch(wait)
        writes.append((time.perf_counter_ns() - t0) / 1000)

    rounds = 1 if smoke(benchmark) else ROUNDS
    batches = 1 if smoke(benchmark) else 10
    figures: dict[tuple[str, str], list[float]] = {}

    def run() -> None:
        log.flush = timed_flush  # type: ignore[method-assign]
        try:
            for _ in range(rounds):
                writes.clear()
                figures.setdefault((case.op, "vsc"), []).append(median_us(sign, batches * audit.BATCH))
                figures.setdefault((case.op, "raw"), []).append(median_us(raw, batches * audit.BATCH))
                full = sorted(writes)
                write = full[len(full) // 2] if full else 0.0
                figures.setdefault((f"audit write of a batch of {audit.BATCH} entries", "vsc"), []).append(write)
                figures.setdefault(("audit write per signature", "vsc"), []).append(write / audit.BATCH)
        finally:
            del log.flush

    benchmark.pedantic(run, rounds=1)
    report_rounds(benchmark, figures, python_client)
