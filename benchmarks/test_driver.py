"""The C driver (driver.c): sign latency, call overhead and C_Login straight through the function list."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cases import SIGN_CASES, SignCase
from benchmarks.common import MODULES, ROUNDS, Env, describe, median_us, report_rounds, run_json, smoke

# Every single-part case, plus the NULL-buffer length query followed by the real call on RSA-2048 and P-256.
DRIVER_RUNS = [(c, False) for c in SIGN_CASES.values() if "multi-part" not in c.mech] + [
    (SIGN_CASES["rsa2048", "SHA256_RSA_PKCS"], True),
    (SIGN_CASES["p256", "ECDSA"], True),
]


def test_driver_sign(benchmark: Any, bench_env: Env, driver: Path, raw_keys: dict[str, Any]) -> None:
    rounds = 1 if smoke(benchmark) else ROUNDS
    figures: dict[tuple[str, str], list[float]] = {}
    unsupported: set[tuple[str, str]] = set()

    def measure(case: SignCase, query: bool) -> None:
        op = case.op + (" + NULL length query" if query else "")
        iterations = 2 if smoke(benchmark) else (40 if case.kind.startswith("rsa") else 300)
        for impl in MODULES:
            if (op, impl) in unsupported:
                continue
            argv = [str(driver), bench_env.module(impl), bench_env.label, bench_env.pin, "sign", case.kind, case.mech]
            argv += [str(iterations), str(case.driver_data_len)] + (["query"] if query else [])
            try:
                result = run_json(argv, bench_env)
            except RuntimeError as exc:
                if "rv=0x70" in str(exc) and impl != "vsc":  # CKR_MECHANISM_INVALID
                    unsupported.add((op, impl))
                    continue
                raise
            figures.setdefault((op, impl), []).append(result["sign"]["median_us"])
        if not query:
            figures.setdefault((op, "raw"), []).append(median_us(partial(case.raw, raw_keys[case.kind]), iterations))

    def run() -> None:
        for _ in range(rounds):
            for case, query in DRIVER_RUNS:
                measure(case, query)

    benchmark.pedantic(run, rounds=1)
    report_rounds(benchmark, figures, lambda impl: "C")


@pytest.mark.parametrize("impl", MODULES)
def test_driver_calls(benchmark: Any, impl: str, bench_env: Env, driver: Path) -> None:
    iterations = 15 if smoke(benchmark) else 60000
    argv = [str(driver), bench_env.module(impl), bench_env.label, bench_env.pin, "calls", str(iterations)]
    result = benchmark.pedantic(run_json, args=(argv, bench_env), rounds=1)
    describe(benchmark, "C_GetInfo", "C", impl, value=result["C_GetInfo"]["median_us"])
    benchmark.extra_info["more"] = [
        {
            "op": "C_GetTokenInfo",
            "client": "C",
            "impl": impl,
            "unit": "us",
            "value": result["C_GetTokenInfo"]["median_us"],
        }
    ]


@pytest.mark.parametrize("impl", MODULES)
def test_driver_login(benchmark: Any, impl: str, bench_env: Env, driver: Path) -> None:
    iterations = 1 if smoke(benchmark) else 7
    argv = [str(driver), bench_env.module(impl), bench_env.find_token(1), bench_env.pin, "login", str(iterations)]
    result = benchmark.pedantic(run_json, args=(argv, bench_env), rounds=1)
    describe(benchmark, "C_Login (ms)", "C", impl, unit="ms", value=result["C_Login"]["median_us"] / 1000)
    benchmark.extra_info["more"] = [
        {"op": "C_Logout", "client": "C", "impl": impl, "unit": "us", "value": result["C_Logout"]["median_us"]}
    ]
