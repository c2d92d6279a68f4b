"""OTP codes per second (issue 10) on a fresh card in a temporary VSC_HOME (removed afterwards): through the real
PKCS#11 module from the C driver (C_SignInit, the length query and C_Sign per code: CKM_VSC_TOTP, CKM_HOTP), in
the token engine alone (the card service the module calls, in this process), and `cryptography`'s own TOTP/HOTP
over the same secret (the floor: no card, no store).

A figure is 1 / the median time of one code. Like the sign rows (ROUNDS in common.py), every row is timed in
rounds spread over the run, the three back to back in each, and a figure is its best round. A TOTP code reads
the secret unsealed once per login; a HOTP code is one durable SQLite write transaction (the counter moves on),
so the disk's fsync decides the HOTP rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.hotp import HOTP
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from benchmarks.common import ROUNDS, median_us, smoke
from vsc_provider import module
from vsc_provider.token import access, otp, otp_keys
from vsc_provider.token.engine import Engine

LABEL, PIN, SO_PIN = "OTP bench", "482915", "19283746"
OPS = {"totp": "TOTP code (codes/s)", "hotp": "HOTP code, counter stored (codes/s)"}
MECHANISMS = {"totp": "VSC_TOTP", "hotp": "HOTP"}  # benchmarks/driver.c's names
CLIENTS = {"raw": "cryptography", "engine": "token engine", "pkcs11": "C"}


@pytest.fixture(scope="module")
def otp_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vsc-otp-bench-") as where:
        home = Path(where)
        create = ["card", "create", "--label", LABEL, "--pin", PIN, "--so-pin", SO_PIN]
        subprocess.run(
            [sys.executable, "-m", "vsc_provider.cli", *create],
            check=True,
            capture_output=True,
            timeout=120,
            env={**os.environ, "VSC_HOME": str(home)},
        )
        yield home


def _driver_us(driver: Path, home: Path, kind: str, iterations: int) -> float:
    """The median us of one code from the C driver: a process of its own that loads the module."""
    argv = [str(driver), str(module.library_path()), LABEL, PIN, "sign", f"bench-{kind}", MECHANISMS[kind]]
    argv += [str(iterations), "0", "query"]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "VSC_HOME": str(home)}
    )
    if result.returncode != 0:
        raise RuntimeError(f"driver {kind} exited {result.returncode}: {result.stderr[-2000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["sign"]["median_us"])


def test_otp_codes_per_second(benchmark: Any, otp_home: Path, driver: Path) -> None:
    engine = Engine(otp_home / "store.sqlite", otp_home / "device.key")
    card = next(iter(engine.cards.values()))
    access.login(engine, card, PIN.encode())
    secret = os.urandom(20)
    keys = {kind: otp_keys.add(engine, card, otp.OtpSpec(kind), secret, "Bench", kind, f"bench-{kind}") for kind in OPS}
    totp, hotp, counters = TOTP(secret, 6, SHA1(), 30), HOTP(secret, 6, SHA1()), count()
    # The floor and the card agree before anything is timed.
    assert otp_keys.code(engine, card, keys["totp"], at=59).code == totp.generate(59).decode()
    assert otp_keys.code(engine, card, keys["hotp"], counter=7).code == hotp.generate(7).decode()
    local: dict[tuple[str, str], Callable[[], bytes]] = {
        ("totp", "raw"): lambda: totp.generate(time.time()),
        ("totp", "engine"): lambda: otp_keys.code(engine, card, keys["totp"]).code.encode(),
        ("hotp", "raw"): lambda: hotp.generate(next(counters)),
        ("hotp", "engine"): lambda: otp_keys.code(engine, card, keys["hotp"]).code.encode(),
    }
    rounds = 1 if smoke(benchmark) else ROUNDS
    figures: dict[tuple[str, str], list[float]] = {}
    hotp_codes = 0  # taken from the store, warm-ups included: the stored counter must have moved by as many

    def run() -> None:
        nonlocal hotp_codes
        for _ in range(rounds):
            for kind in OPS:
                iterations = 2 if smoke(benchmark) else (2000 if kind == "totp" else 300)
                for impl in ("raw", "engine"):
                    us = median_us(local[kind, impl], iterations)
                    figures.setdefault((kind, impl), []).append(1e6 / us)
                figures.setdefault((kind, "pkcs11"), []).append(1e6 / _driver_us(driver, otp_home, kind, iterations))
                if kind == "hotp":
                    hotp_codes += 2 * (iterations + 3)

    try:
        benchmark.pedantic(run, rounds=1)
        engine.poll()
        stored = otp_keys.find(next(iter(engine.cards.values())), "bench-hotp")
        assert otp.spec_of(stored.attrs).counter == hotp_codes
    finally:
        engine.audit.close()  # fold this process's audit journal while the store is still there
    records = [
        {
            "op": OPS[kind],
            "client": CLIENTS[impl],
            "impl": "raw" if impl == "raw" else "vsc",
            "unit": "codes/s",
            "value": max(values),
            "rounds": values,
        }
        for (kind, impl), values in figures.items()
    ]
    benchmark.extra_info.update(records[0])
    benchmark.extra_info["more"] = records[1:]
