"""Hostile input through the raw C ABI, each run in a child process (tests/native/hostile_host.py): no crash
(the exit status), no hang (a bounded wait), no CKR_GENERAL_ERROR or traceback, no memory growth, and the
store intact afterwards (the card still logs in and its key still signs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.conftest import SO_PIN, USER_PIN, run_vsc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A store with one card and an RSA, a P-256 and an Ed25519 key (labels rsa, ec, ed)."""
    env = {"VSC_HOME": str(tmp_path_factory.mktemp("hostile") / "vsc-home"), "VSC_PIN_DELAY_BASE": "0.05"}
    out = run_vsc("card", "create", "--label", "Hostile", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json", env=env)
    serial = json.loads(out.stdout)["serial"]
    for kind, label in (("rsa2048", "rsa"), ("p256", "ec"), ("ed25519", "ed")):
        run_vsc("key", "generate", "--card", serial, "--type", kind, "--label", label, "--pin", USER_PIN, env=env)
    yield {**env, "serial": serial}


def host(
    home: dict[str, str], module_path: str, *args: str, timeout: float = 60, env_extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one scenario in a child; it must exit 0 within TIMEOUT, print its result and no traceback."""
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.native.hostile_host import main; main()"
    env = {**os.environ, "VSC_HOME": home["VSC_HOME"], "VSC_PIN_DELAY_BASE": home["VSC_PIN_DELAY_BASE"]}
    env.update(env_extra or {})
    result = subprocess.run(
        [sys.executable, "-c", script, args[0], module_path, *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"{args[0]}: exit {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["wrong"] == [], out["wrong"]
    return out


def test_unknown_mechanism_types_are_refused_without_growing_the_host(home, module_path):
    out = host(home, module_path, "mechanisms", "200000")
    growth_mb = (out["rss_after_kb"] - out["rss_before_kb"]) / 1024
    assert growth_mb < 5, out


def test_null_pointers_huge_lengths_and_random_handles_in_every_function(home, module_path):
    out = host(home, module_path, "null-pointers", "1")
    assert out["calls"] > 5000


@pytest.mark.parametrize("seed", [1, 2])
def test_garbage_mechanism_parameters_and_calls_out_of_order(home, module_path, seed):
    out = host(home, module_path, "garbage", str(seed), "1500")
    assert out["calls"] == 1500
    assert out["started"] > 50  # the garbage reached real operations, not only the parameter checks


def test_login_churn_from_four_threads_does_not_keep_growing(home, module_path):
    # Each login's scrypt takes a 16 MiB buffer. glibc would keep freed buffers in per-thread arenas and in
    # the heap (its mmap threshold grows after the first free), so the host's size would show the allocator's
    # cache, not the module's. A fixed mmap threshold makes every such buffer its own mapping, returned at
    # free, and the host samples its size between rounds, when no login is in flight.
    env = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "1048576"}
    out = host(home, module_path, "login-churn", "6", env_extra=env)
    samples = out["rss_kb"]
    assert out["rounds"] > 10
    # the first round loads what a login needs; after that the host stays flat
    assert (samples[-1] - samples[1]) / 1024 < 3, samples


def test_the_store_is_intact_afterwards(home, module_path):
    out = host(home, module_path, "check")
    public = serialization.load_der_public_key(bytes.fromhex(out["public_key_info"]))
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(bytes.fromhex(out["signature"]), b"still signs", padding.PKCS1v15(), hashes.SHA256())
