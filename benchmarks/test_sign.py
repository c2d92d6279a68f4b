"""C_SignInit+C_Sign latency through python-pkcs11 for SoftHSM and vsc, and raw `cryptography` (the floor).

Like the C driver rows (see ROUNDS in common.py), every case is timed in rounds spread over the run,
the three implementations back to back in each, and a figure is the best round's median.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from benchmarks.cases import RAW_RSA_CASES, SIGN_CASES, SignCase
from benchmarks.common import IMPLS, ROUNDS, median_us, python_client, report_rounds, smoke


def test_sign(benchmark: Any, sessions: dict[str, Any], raw_keys: dict[str, Any]) -> None:
    _measure(benchmark, sessions, raw_keys, list(SIGN_CASES.values()))


def test_sign_raw_rsa(benchmark: Any, sessions: dict[str, Any], raw_keys: dict[str, Any]) -> None:
    """CKM_RSA_X_509: the raw private operation (OpenSSL without padding in vsc)."""
    _measure(benchmark, sessions, raw_keys, list(RAW_RSA_CASES.values()))


def _measure(benchmark: Any, sessions: dict[str, Any], raw_keys: dict[str, Any], cases: list[SignCase]) -> None:
    import pkcs11

    rounds = 1 if smoke(benchmark) else ROUNDS
    calls: dict[tuple[str, str], Callable[[], bytes]] = {}
    for case in cases:
        for impl in IMPLS:
            if impl == "raw":
                key = raw_keys[case.kind]
                calls[case.op, impl] = partial(case.raw, key)
                continue
            key = sessions[impl].get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=case.kind)
            try:
                case.pkcs11(key)
            except pkcs11.MechanismInvalid:
                continue  # SoftHSM lacks some mechanisms: its cell reads n/a
            calls[case.op, impl] = partial(case.pkcs11, key)
    figures: dict[tuple[str, str], list[float]] = {}

    def run() -> None:
        for _ in range(rounds):
            for (op, impl), call in calls.items():
                iterations = 2 if smoke(benchmark) else (40 if "RSA" in op else 300)
                figures.setdefault((op, impl), []).append(median_us(call, iterations))

    benchmark.pedantic(run, rounds=1)
    report_rounds(benchmark, figures, python_client)
