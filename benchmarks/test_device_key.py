"""C_Login through the C driver on a card of each device-key back end (issue 14): the file, the kernel keyring
and a TPM (swtpm on loopback: a hardware TPM is slower). Signing is not measured again here: the back end is
asked at login only, so the sign rows do not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import Env, describe, run_json, smoke
from tests.swtpm_support import swtpm

BACKENDS = ("file", "keyring", "tpm")
PIN = "482915"


@pytest.fixture(scope="module")
def tcti(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with swtpm(tmp_path_factory.mktemp("swtpm")) as where:
        yield where


@pytest.mark.parametrize("backend", BACKENDS)
def test_login_per_device_key(
    benchmark: Any,
    backend: str,
    bench_env: Env,
    driver: Path,
    tcti: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("VSC_TPM_TCTI", tcti)
    env = {**os.environ, "VSC_HOME": str(home)}
    label = f"login {backend}"
    vsc = [sys.executable, "-m", "vsc_provider.cli", "card"]
    create = [*vsc, "create", "--label", label, "--pin", PIN, "--so-pin", "19283746", "--device-key", backend]
    subprocess.run(create, check=True, capture_output=True, env=env, timeout=120)
    iterations = 1 if smoke(benchmark) else 7
    argv = [str(driver), bench_env.module("vsc"), label, PIN, "login", str(iterations)]
    own_store = Env(bench_env.directory, {**bench_env.data, "vsc_home": str(home)})
    try:
        result = benchmark.pedantic(run_json, args=(argv, own_store), rounds=1)
    finally:
        subprocess.run([*vsc, "delete", label, "--yes"], check=True, capture_output=True, env=env, timeout=120)
    op = f"C_Login, device key {backend} (ms)"
    describe(benchmark, op, "C", "vsc", unit="ms", value=result["C_Login"]["median_us"] / 1000)
