"""The README's main job: `vsc demo` runs the whole path on embedded defaults."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import require_tool


def test_demo_activates_signs_and_logs_in_over_tls(tmp_path):
    require_tool("gnutls-cli", "gnutls-bin")
    result = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "activation link: personal://activate?" in result.stdout
    assert ": verified" in result.stdout
    assert "Hello, organizationName=vsc-provider, commonName=demo" in result.stdout
