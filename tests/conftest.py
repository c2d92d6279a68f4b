"""Shared fixtures: a private VSC_HOME per test, the built module, the CLI, and real tools.

Tools a test needs are installed by .ci/run; outside CI a missing tool skips with the Debian package
to install, in CI it fails (CI=true), so nothing is skipped silently there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vsc_provider import module

USER_PIN = "482915"
SO_PIN = "19283746"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, package: str) -> str:
    """The path of a program, or skip (locally) / fail (in CI) naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: apt-get install {package}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_file(path: str, package: str) -> str:
    if not os.path.exists(path):
        message = f"{path} not found: apt-get install {package}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


# What the product and the clients it sets up write in a home directory.
HOME_PATHS = (".local/share/vsc-provider", ".pki", ".ssh", ".config/pkcs11", ".config/vsc", ".mozilla")


def _home_snapshot(home: Path) -> set[str]:
    """The files and directories under HOME_PATHS. Only what exists is compared: other users of the machine
    may write to a store there while the tests run, so contents and SQLite's passing -wal/-shm files are not."""
    seen: set[str] = set()
    for top in HOME_PATHS:
        root = home / top
        if root.exists():
            seen.update(
                str(path.relative_to(home))
                for path in [root, *root.rglob("*")]
                if not path.name.endswith(("-wal", "-shm", "-journal"))
            )
    return seen


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The whole run, and every program it starts, sees a temporary HOME without XDG directories, so that no
    test touches the user's cards or client configuration; at the end the real home must be as it was."""
    real = Path(os.path.expanduser("~"))
    before = _home_snapshot(real)
    home = tmp_path_factory.mktemp("home")
    names = ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["HOME"] = str(home)
    for name in names[1:]:
        os.environ.pop(name, None)
    try:
        yield home
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    created = sorted(_home_snapshot(real) - before)
    assert not created, f"the tests wrote to the real home directory {real}: {created}"


@pytest.fixture(scope="session")
def module_path() -> str:
    return str(module.library_path())


@pytest.fixture
def vsc_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "vsc-home"
    monkeypatch.setenv("VSC_HOME", str(home))
    monkeypatch.setenv("VSC_PIN_DELAY_BASE", "0.2")
    return home


def run_vsc(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real `vsc` command in a subprocess (the installed console script's module)."""
    result = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"vsc {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def card(vsc_home: Path) -> Iterator[str]:
    """A local card labelled 'Test card' with the standard test PINs; yields its serial."""
    import json

    out = run_vsc("card", "create", "--label", "Test card", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json")
    yield json.loads(out.stdout)["serial"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL cluster of Debian's packages for the server tests (tests/postgres.py); never skipped in CI."""
    from tests.postgres import Postgres

    cluster = Postgres()
    yield cluster
    cluster.stop()
