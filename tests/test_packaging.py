"""The server's packaging: the systemd unit passes `systemd-analyze verify` without a warning and shows how
several instances name their database; the container build context leaves out what is not the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "packaging" / "vsc-identity-server.service"


def test_the_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    vsc = Path(sys.executable).parent / "vsc"  # the unit's ExecStart must exist: this checkout's installed one
    assert vsc.exists()
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/vsc-provider/.venv/bin/vsc", str(vsc)))
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_a_misspelt_unit_is_caught(tmp_path: Path) -> None:
    """The check above would see a mistake: an unknown key is a warning it reports."""
    analyze = require_tool("systemd-analyze", "systemd")
    unit = tmp_path / UNIT.name
    text = UNIT.read_text().replace("/opt/vsc-provider/.venv/bin/vsc", str(Path(sys.executable).parent / "vsc"))
    unit.write_text(text.replace("Restart=on-failure", "Restartt=on-failure"))
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert "Restartt" in result.stderr


def test_the_unit_shows_the_shared_database_for_several_instances() -> None:
    text = UNIT.read_text()
    shown = [line for line in text.splitlines() if "VSC_SERVER_DATABASE=postgresql://" in line]
    assert shown and all(line.startswith("#") for line in shown)  # a comment: SQLite stays the default
    assert "target_session_attrs=read-write" in shown[0]


def test_the_container_build_context_leaves_out_caches_and_the_venv() -> None:
    containerfile = (ROOT / "packaging" / "Containerfile").read_text()
    assert "COPY . /opt/vsc-provider" in containerfile  # the context is the repository root
    ignored = {line.strip() for line in (ROOT / ".containerignore").read_text().splitlines()}
    assert {".venv", "build", ".git", ".cache", "__pycache__", ".mypy_cache", ".pytest_cache"} <= ignored
    assert not ignored & {"src", "native", "setup.py", "pyproject.toml"}  # what the image installs from
