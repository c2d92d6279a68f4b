"""The tests run with a temporary HOME (tests/conftest.py's private_home), and so do the programs they start."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path


def test_home_is_private_for_the_tests_and_their_programs(private_home, tmp_path):
    real = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert Path(os.environ["HOME"]) == private_home != real
    assert "XDG_DATA_HOME" not in os.environ
    child = subprocess.run([sys.executable, "-c", "import os; print(os.path.expanduser('~'))"], capture_output=True)
    assert child.stdout.decode().strip() == str(private_home)
    # A vsc run without VSC_HOME lands in the private home, never in the user's store.
    env = {k: v for k, v in os.environ.items() if k != "VSC_HOME"}
    created = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", "card", "list"], env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    assert (private_home / ".local/share/vsc-provider/store.sqlite").exists()
