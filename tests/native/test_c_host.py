"""The module inside a C program that is not Python: start-up, interfaces, reload, fork, foreign Python."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SO_PIN, USER_PIN, require_tool, run_vsc

SOURCE = Path(__file__).with_name("host.c")
OASIS = Path(__file__).resolve().parents[2] / "native" / "oasis"  # host.c includes the vendored pkcs11.h


def build(tmp_path: Path, *flags: str) -> Path:
    cc = require_tool("cc", "build-essential")
    exe = tmp_path / ("host" + "".join(f.strip("-") for f in flags))
    subprocess.run([cc, "-O1", "-I", str(OASIS), "-o", str(exe), str(SOURCE), "-ldl", "-lpthread", *flags], check=True)
    return exe


def run(exe: Path, module_path: str, mode: str, *extra: str) -> tuple[dict[str, list[str]], str]:
    result = subprocess.run(
        [str(exe), module_path, mode, *extra], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert result.returncode == 0, f"C host ({mode}) exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    lines: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        name, *values = line.split()
        lines.setdefault(name, []).extend(values)
    return lines, result.stderr


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return build(tmp_path)


def test_starts_python_in_a_c_host_and_refuses_a_second_initialize(host, module_path, vsc_home):
    run_vsc("card", "create", "--label", "C host", "--pin", USER_PIN, "--so-pin", SO_PIN)
    out, _ = run(host, module_path, "plain")
    assert out["initialize"] == ["0"]
    assert out["slots"] == ["0", "1"]
    assert out["initialize-again"] == [str(0x191)]


def test_interfaces(host, module_path, vsc_home):
    out, _ = run(host, module_path, "interfaces")
    assert out["list-count"] == ["0", "3"]
    assert out["list-short"] == [str(0x150), "3"]
    assert out["list-full"] == ["0", "3"]
    assert out["default"] == ["0", "1", "3", "0"]  # a caller asking for no version still gets 3.0
    assert out["v240"] == ["0", "1", "40"]
    assert out["v30"] == ["0", "1"]
    assert out["v32"] == ["0", "1", "2"]
    for name in ("unknown-name", "unknown-version", "fork-safe", "null-out"):
        assert out[name] != ["0"], name  # never CKR_OK without an interface


def test_finalize_dlclose_and_initialize_again(host, module_path, vsc_home):
    out, _ = run(host, module_path, "reload")
    assert out["finalize"] == ["0", "0", "0"]
    assert out["after-finalize"] == [str(0x190)] * 3
    assert out["reinitialize"] == ["0", "0", "0"]
    assert out["done"] == []


def test_fork_with_a_thread_inside_the_module(host, module_path, vsc_home):
    run_vsc("card", "create", "--label", "Forked", "--pin", USER_PIN, "--so-pin", SO_PIN)
    out, _ = run(host, module_path, "fork")
    assert out["forked-children-ok"] == ["20"], out


def test_fork_while_another_thread_signs(host, module_path, vsc_home):
    run_vsc("card", "create", "--label", "Forked", "--pin", USER_PIN, "--so-pin", SO_PIN)
    run_vsc("key", "generate", "--card", "Forked", "--type", "rsa2048", "--label", "k", "--pin", USER_PIN)
    out, _ = run(host, module_path, "fork-sign", USER_PIN)
    assert out["prepare"] == ["0"]
    assert out["forked-children-ok"] == ["20"], out
    assert out["signatures-ok"] == ["1"]
    # The children re-initialised and never wrote what the parent's audit log held: one chain, still whole.
    assert "verified" in run_vsc("audit", "verify", "--card", "Forked").stdout


def test_c_finalize_writes_the_audit_entries_a_c_host_left_in_memory(host, module_path, vsc_home):
    """A C host never runs Python's exit handlers: what the audit log still holds is written by C_Finalize."""
    run_vsc("card", "create", "--label", "Audited", "--pin", USER_PIN, "--so-pin", SO_PIN)
    run_vsc("key", "generate", "--card", "Audited", "--type", "rsa2048", "--label", "k", "--pin", USER_PIN)
    out, _ = run(host, module_path, "sign-finalize", USER_PIN, "37")  # fewer than a batch: all left in memory
    assert out["prepare"] == ["0"] and out["signed"] == ["37"] and out["finalize"] == ["0"]
    listing = json.loads(run_vsc("audit", "list", "--card", "Audited", "--json").stdout)
    signs = [e for e in listing["entries"] if e["kind"] == "sign"]
    assert len(signs) == 37 and {e["mechanism"] for e in signs} == {"CKM_SHA256_RSA_PKCS"}
    assert all(e["origin"].startswith("pkcs11/host") for e in signs)
    assert "verified" in run_vsc("audit", "verify", "--card", "Audited").stdout


def test_a_host_running_another_python_is_refused(tmp_path, module_path, vsc_home):
    exe = build(tmp_path, "-DFAKE_PYTHON", "-rdynamic")
    out, err = run(exe, module_path, "version")
    assert out["initialize"] == [str(0x5)]
    assert "built for Python" in err and "3.99.0" in err


def test_concurrent_first_initialize(host, module_path, vsc_home):
    out, _ = run(host, module_path, "concurrent-init")
    assert out["results"] == ["0", str(0x191)]  # one succeeds, the other is told it already is
    assert out["slots"][0] == "0"
