"""Debugger checks in the `vsc` processes that unlock keys (issue 14): a `vsc` command run under a tracer
(strace) is refused with one line before any PIN check; VSC_ALLOW_DEBUG=1 lets it through; the CLI's process
is not dumpable. The PKCS#11 module in a traced host is not refused (a host's debugging is its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import USER_PIN, require_tool, run_vsc


def _traced(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    strace = require_tool("strace", "strace")
    return subprocess.run(
        [strace, "-f", "-qq", "-o", "/dev/null", sys.executable, "-m", "vsc_provider.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_a_traced_vsc_refuses_to_unlock_with_one_line(card: str, vsc_home: Path) -> None:
    refused = _traced("key", "generate", "--card", "Test card", "--type", "p256", "--label", "k", "--pin", USER_PIN)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "traced by pid" in lines[0] and "VSC_ALLOW_DEBUG" in lines[0]
    # Refused before the PIN check: no try was counted, and nothing was made.
    shown = json.loads(run_vsc("card", "show", "Test card", "--json").stdout)
    assert shown["failed_tries"] == 0
    assert [k for k in shown["keys"] if k.get("label") == "k"] == []
    # Reading public objects needs no unlock: still allowed under a tracer.
    assert _traced("card", "show", "Test card", "--json").returncode == 0


def test_the_refusal_is_logged_where_the_log_goes(card: str, vsc_home: Path, tmp_path: Path) -> None:
    logfile = tmp_path / "vsc.log"
    refused = _traced("card", "show", "Test card", "--pin", USER_PIN, env={"VSC_LOG": str(logfile)})
    assert refused.returncode != 0
    assert "refusing to unlock a card" in logfile.read_text()
    assert USER_PIN not in logfile.read_text()


def test_developers_may_allow_debugging(card: str, vsc_home: Path) -> None:
    allowed = _traced("key", "generate", "--card", "Test card", "--type", "p256", "--label", "k", "--pin", USER_PIN,
                      env={"VSC_ALLOW_DEBUG": "1"})  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr


def test_the_cli_process_is_not_dumpable(vsc_home: Path) -> None:
    script = (
        "import sys; from vsc_provider import cli, tamper\n"
        "try:\n    cli.main(['card', 'list'])\nexcept SystemExit:\n    pass\n"
        "print(tamper.dumpable())"
    )
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert plain.stdout.strip().splitlines()[-1] == "False"
    env = {**os.environ, "VSC_ALLOW_DEBUG": "1"}
    allowed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    assert allowed.stdout.strip().splitlines()[-1] == "True"


HOST = """
import sys
import pkcs11
lib = pkcs11.lib(sys.argv[1])
with lib.get_token(token_label="Test card").open(user_pin=sys.argv[2]) as s:
    print("logged in")
"""


def test_a_traced_pkcs11_host_still_logs_in(card: str, vsc_home: Path, module_path: str) -> None:
    strace = require_tool("strace", "strace")
    host = subprocess.run(
        [strace, "-f", "-qq", "-o", "/dev/null", sys.executable, "-c", HOST, module_path, USER_PIN],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert host.returncode == 0, host.stderr
    assert host.stdout.strip() == "logged in"
