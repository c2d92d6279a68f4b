"""What the benchmark cases share: the prepared token environment, the C driver, and result records.

Every case stores its figure in `benchmark.extra_info` (op, client, impl, unit and, for figures measured
outside pytest-benchmark's timer, value); benchmarks/report.py turns a run's JSON into the table.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAKE_TOKEN = ROOT / "softhsm-config" / "make_token.py"
DRIVER_SOURCE = Path(__file__).resolve().parent / "driver.c"
IMPLS = ("raw", "softhsm", "vsc")
MODULES = ("softhsm", "vsc")


@dataclass(frozen=True)
class Env:
    """A directory made by softhsm-config/make_token.py: SoftHSM token + vsc card with the same key set."""

    directory: Path
    data: dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.data["label"])

    @property
    def pin(self) -> str:
        return str(self.data["pin"])

    def module(self, impl: str) -> str:
        return str(self.data[f"{impl}_module"])

    def environ(self) -> dict[str, str]:
        """Variables that point both modules at this directory's stores."""
        return {"SOFTHSM2_CONF": self.data["softhsm_conf"], "VSC_HOME": self.data["vsc_home"]}

    def find_token(self, count: int) -> str:
        return str(self.data["find_tokens"][str(count)])

    def private_key_pem(self, kind: str) -> bytes:
        return (Path(self.data["keys_dir"]) / f"{kind}.pem").read_bytes()


def prepare_env(directory: Path | None = None) -> Env:
    """Reuse VSC_BENCH_ENV (a directory made by make_token.py) or make a fresh one."""
    given = os.environ.get("VSC_BENCH_ENV")
    if given and (Path(given) / "env.json").exists():
        target = Path(given)
    else:
        target = Path(given) if given else (directory or Path(tempfile.mkdtemp(prefix="vsc-bench-"))) / "env"
        subprocess.run([sys.executable, str(MAKE_TOKEN), str(target)], check=True, capture_output=True, timeout=600)
    return Env(target, json.loads((target / "env.json").read_text()))


def build_driver(directory: Path) -> Path:
    """Compile benchmarks/driver.c with the system C compiler into DIRECTORY."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler: apt-get install gcc")
    out = directory / "pkcs11-driver"
    subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(out), str(DRIVER_SOURCE), "-ldl", "-lpthread"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def run_json(argv: list[str], env: Env, timeout: float = 300, cwd: Path | None = None) -> dict[str, Any]:
    """Run a helper process with the stores of ENV and parse the JSON object it prints last."""
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env.environ()}, check=False, cwd=cwd
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} {' '.join(argv[1:6])} exited {result.returncode}: {result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def describe(benchmark: Any, op: str, client: str, impl: str, unit: str = "us", value: float | None = None) -> None:
    """Label a result for the report; VALUE is given when the figure was not timed by pytest-benchmark."""
    benchmark.extra_info.update(op=op, client=client, impl=impl, unit=unit)
    if value is not None:
        benchmark.extra_info["value"] = value


def python_client(impl: str) -> str:
    """Who made a python-side figure: `cryptography` itself for the raw floor, else python-pkcs11."""
    return "cryptography" if impl == "raw" else "python-pkcs11"


def report_rounds(benchmark: Any, figures: dict[tuple[str, str], list[float]], client: Callable[[str], str]) -> None:
    """Record each (op, impl)'s best round (its smallest median in us) with every round, for the report."""
    records = [
        {"op": op, "client": client(impl), "impl": impl, "unit": "us", "value": min(values), "rounds": values}
        for (op, impl), values in figures.items()
    ]
    benchmark.extra_info.update(records[0])
    benchmark.extra_info["more"] = records[1:]


def smoke(benchmark: Any) -> bool:
    """True in the smoke run (--benchmark-disable): run each case once with tiny iteration counts."""
    return bool(getattr(benchmark, "disabled", False))


# This VM has slow periods of seconds to tens of seconds (other tenants), which move a single figure by up to
# 2x. So every case is measured in rounds spread over the whole run (round 1 of every case, then round 2...),
# both modules and the raw floor back to back in each, and a figure is its best round's median: every
# implementation and case gets the same chances of a quiet stretch.
ROUNDS = 6


def median_us(call: Callable[[], bytes], iterations: int) -> float:
    """A call timed one by one in this process (as the C driver times C_SignInit+C_Sign), median in us."""
    for _ in range(3):
        assert call()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000
