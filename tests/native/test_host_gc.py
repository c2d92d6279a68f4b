"""Python hosts: the host's garbage collector and signal handlers never run host code inside a module call
(PyKCS11 hung for good when its __del__ ran inside C_Initialize and waited on the lock load() holds).

Each host runs in a child process with a bounded wait (see gc_hosts.py for what each one does).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import USER_PIN, run_vsc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ec_card(card: str) -> str:
    run_vsc("key", "generate", "--card", card, "--type", "p256", "--label", "gc", "--pin", USER_PIN)
    return card


def run_host(kind: str, module_path: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "tests.native.gc_hosts", kind, module_path],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["final_sign"], out
    return out


@pytest.mark.parametrize("kind", ["raw", "pykcs11", "python-pkcs11"])
def test_no_collection_inside_a_module_call(ec_card: str, module_path: str, kind: str) -> None:
    out = run_host(kind, module_path)
    assert out["collections"] > 200, out  # the collector did run, often, around the module's calls
    assert out["inside"] == [], out


def test_finalizers_calling_the_module_leave_it_consistent(ec_card: str, module_path: str) -> None:
    out = run_host("raw", module_path)
    codes = out["codes"]
    # The finalizers ran between calls, with the module both up and down, and got ordinary answers.
    assert set(codes["slots"]) <= {0, 0x190} and 0 in codes["slots"], codes
    assert 0 in codes["finalize"], codes
    assert set(codes["initialize"]) <= {0, 0x191}, codes
    assert out["signed"] >= 1, out


def test_reentrant_call_from_a_signal_handler_is_refused_at_once(ec_card: str, module_path: str) -> None:
    out = run_host("signal", module_path)
    assert out["reentered"] >= 20, out  # CKR_FUNCTION_FAILED, without waiting on the outer call
    assert set(out["codes"]) <= {0, 0x6}, out


def test_a_child_forked_during_another_threads_call_has_its_gc_on(ec_card: str, module_path: str) -> None:
    out = run_host("fork", module_path)
    children = out["children"]
    assert any(not c["parent_on"] for c in children), children  # some forks did land inside a call
    assert all(c["child_on"] for c in children), children
    assert out["parent_on_after"], out
