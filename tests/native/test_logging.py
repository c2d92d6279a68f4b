"""The debug log names every call and its result, and never carries a PIN."""

from __future__ import annotations

import json
import os
import sqlite3
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


def test_an_unexpected_error_becomes_general_error_and_a_log_line(vsc_home, module_path, tmp_path):
    """A store damaged under a running host: the host gets CKR_GENERAL_ERROR and a log line, not a crash."""
    run_vsc("card", "create", "--label", "Damaged", "--pin", USER_PIN, "--so-pin", SO_PIN)
    log = tmp_path / "vsc.log"
    script = (
        "import sys, pkcs11\n"
        "from pkcs11.exceptions import PKCS11Error\n"
        "lib = pkcs11.lib(sys.argv[1])\n"
        "print(len(lib.get_slots()), flush=True)\n"
        "sys.stdin.readline()\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        lib.get_slots()\n"
        "        print('OK', flush=True)\n"
        "    except PKCS11Error as exc:\n"
        "        print(type(exc).__name__, flush=True)\n"
    )
    env = {**os.environ, "VSC_LOG": str(log)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, module_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "1"
        with sqlite3.connect(vsc_home / "store.sqlite") as db:  # damage a card record behind the module's back
            db.execute("UPDATE cards SET policy = 'not json'")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        answers = [proc.stdout.readline().strip(), proc.stdout.readline().strip()]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answers == ["GeneralError", "GeneralError"], answers
    assert "C_GetSlotList failed with an unexpected error" in log.read_text()


LOGGING_HOST = """
import logging
from vsc_provider import log
log.configure_from_environment()
logging.getLogger("vsc.provisioning").warning("from a plain vsc logger")
log.get("vsc.pkcs11").warning("from a lazy vsc logger")
print("still running")
"""


def test_vsc_log_collects_every_vsc_logger_and_an_unwritable_one_falls_back_to_stderr(tmp_path):
    target = tmp_path / "vsc.log"
    env = {**os.environ, "VSC_LOG": str(target)}
    done = subprocess.run([sys.executable, "-c", LOGGING_HOST], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "still running" in done.stdout
    text = target.read_text()
    assert "vsc.provisioning: from a plain vsc logger" in text
    assert "vsc.pkcs11: from a lazy vsc logger" in text
    env["VSC_LOG"] = str(tmp_path / "missing" / "dir" / "vsc.log")
    done = subprocess.run([sys.executable, "-c", LOGGING_HOST], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "still running" in done.stdout
    assert "cannot open VSC_LOG" in done.stderr and "from a lazy vsc logger" in done.stderr
