"""A card store that cannot be opened: one line from `vsc`, an error code from the module, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, run_vsc

HOST = (
    "import sys, pkcs11\n"
    "try:\n"
    "    pkcs11.lib(sys.argv[1]).get_slots()\n"
    "    print('OK')\n"
    "except pkcs11.exceptions.PKCS11Error as exc:\n"
    "    print(type(exc).__name__)\n"
)


def _module_answer(module_path: str, home: Path) -> subprocess.CompletedProcess[str]:
    """What a PKCS#11 host (python-pkcs11, in a process of its own) gets from C_Initialize."""
    return subprocess.run(
        [sys.executable, "-c", HOST, module_path],
        capture_output=True,
        text=True,
        env={**os.environ, "VSC_HOME": str(home)},
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _assert_one_line(result: subprocess.CompletedProcess[str], home: Path, reason: str) -> None:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: cannot open the card store {home}/store.sqlite: {reason}")
    assert lines[0].endswith("(CKR_DEVICE_ERROR)")


def test_vsc_home_is_a_file(tmp_path, module_path):
    home = tmp_path / "not-a-dir"
    home.write_text("")
    _assert_one_line(run_vsc("card", "list", env={"VSC_HOME": str(home)}, check=False), home, "File exists")
    answer = _module_answer(module_path, home)
    assert answer.stdout.strip() == "DeviceError" and "Traceback" not in answer.stderr


def test_corrupt_store(tmp_path, module_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "store.sqlite").write_bytes(b"this is not an SQLite database, it is a file of text" * 100)
    result = run_vsc("card", "list", env={"VSC_HOME": str(home)}, check=False)
    _assert_one_line(result, home, "file is not a database")
    answer = _module_answer(module_path, home)
    assert answer.stdout.strip() == "DeviceError" and "Traceback" not in answer.stderr


def test_the_traceback_goes_to_the_debug_log(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "store.sqlite").write_bytes(b"garbage" * 1000)
    log = tmp_path / "vsc.log"
    result = run_vsc("card", "list", env={"VSC_HOME": str(home), "VSC_DEBUG": "1", "VSC_LOG": str(log)}, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Traceback" in log.read_text() and "file is not a database" in log.read_text()


def _read_only_command(folder: Path, *command: str) -> list[str]:
    """`command` with `folder` read-only: chmod for a normal user; root ignores modes, so a read-only bind
    mount in a mount namespace of its own."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        return list(command)
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-m", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        message = "root without mount namespaces (unshare -m): cannot make a read-only directory"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(folder), *command]


@pytest.mark.parametrize("with_store", [False, True], ids=["empty", "existing-store"])
def test_read_only_directory(tmp_path, module_path, with_store):
    home = tmp_path / "home"
    home.mkdir()
    if with_store:
        run_vsc("card", "list", env={"VSC_HOME": str(home)})
        for leftover in home.glob("store.sqlite-*"):
            if leftover.name.endswith(("-wal", "-shm")):
                leftover.unlink()
    env = {**os.environ, "VSC_HOME": str(home)}
    cli = _read_only_command(home, sys.executable, "-m", "vsc_provider.cli", "card", "list")
    result = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    _assert_one_line(result, home, "")
    host = _read_only_command(home, sys.executable, "-c", HOST, module_path)
    answer = subprocess.run(host, capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert answer.stdout.strip() == "DeviceError" and "Traceback" not in answer.stderr
    home.chmod(0o700)
