"""The README's main job: `vsc demo` runs the whole path on embedded defaults and says what it does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool


def _demo(tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_activates_signs_and_logs_in_over_tls(tmp_path):
    require_tool("gnutls-cli", "gnutls-bin")
    out = _demo(tmp_path)
    steps = re.findall(r"^\[(\d)/6\] .*done \(\d+\.\d s\)$", out, re.MULTILINE)
    assert steps == ["1", "2", "3", "4", "5", "6"], out
    assert "activating the card with PIN 482915" in out
    assert "activation link: personal://activate?" in out
    assert "its pin= is the fingerprint of the server's TLS key" in out and "it is not the card's PIN" in out
    assert ": verified" in out
    assert "Hello, organizationName=vsc-provider, commonName=demo" in out
    # the shop's order, pushed to the agent, approved on its page, verified by the server and by the demo
    assert "the shop got the order signed by CN=demo,O=vsc-provider (JWS verified by the server and here)" in out
    # The temporary directory (CA key, escrow key, device key, admin token) is gone.
    assert "removed " in out and list(tmp_path.iterdir()) == []


def test_demo_keep_leaves_the_directory(tmp_path):
    require_tool("gnutls-cli", "gnutls-bin")
    out = _demo(tmp_path, "--keep")
    (work,) = list(tmp_path.iterdir())
    assert f"kept {work}" in out
    assert (work / "server" / "ca.pem").exists() and (work / "home" / "store.sqlite").exists()
