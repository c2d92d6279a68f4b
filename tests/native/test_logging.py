"""The debug log names every call and its result, and never carries a PIN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SO_PIN, USER_PIN, run_vsc

WORKER = str(Path(__file__).parents[1] / "token" / "p11worker.py")


def test_debug_log_names_calls_and_hides_pins(vsc_home, module_path, tmp_path):
    run_vsc("card", "create", "--label", "Logged", "--pin", USER_PIN, "--so-pin", SO_PIN)
    run_vsc("key", "generate", "--card", "Logged", "--type", "p256", "--label", "k", "--pin", USER_PIN)
    log = tmp_path / "vsc.log"
    env = {**os.environ, "VSC_DEBUG": "1", "VSC_LOG": str(log), "PYTHONPATH": str(Path(__file__).parents[2])}
    result = subprocess.run(
        [sys.executable, WORKER, module_path, "watch"],
        input=f"k {USER_PIN}\nk 000001\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    first = json.loads(result.stdout.splitlines()[1])
    assert "signature" in first
    text = log.read_text()
    assert "C_Initialize -> CKR_OK" in text
    assert "C_Login -> CKR_OK" in text
    assert "C_Sign -> CKR_OK" in text
    assert "C_Login -> CKR_PIN_INCORRECT" in text
    assert USER_PIN not in text and "000001" not in text and SO_PIN not in text
