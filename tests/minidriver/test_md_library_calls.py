"""The rest of the minidriver library's C functions, driven over its C ABI by a CSP written in Python
(md_abi_driver.py, in a child process): files and directories, key import, PSS, raw decryption, ECDH and the
KDF, PIN change and unblock, container and card properties, container deletion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import run_vsc
from vsc_provider import module

ROOT = Path(__file__).resolve().parents[2]
PIN, SO_PIN, NEW_PIN = "4321", "87654321", "5678"


def test_the_other_card_edge_calls_over_the_c_abi(vsc_home):
    run_vsc("card", "create", "--label", "ABI", "--pin", PIN, "--so-pin", SO_PIN, "--policy", "compatible")
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    script += "from tests.minidriver.md_abi_driver import run; "
    script += f"run({str(module.minidriver_path())!r}, {PIN!r}, {SO_PIN!r}, {NEW_PIN!r})"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "all-ok"
    assert "Traceback" not in result.stderr, result.stderr
