"""A real PostgreSQL (Debian's postgresql-15 binaries) in a temporary directory for the server tests: initdb
and pg_ctl as an unprivileged user (`vscpg`, made when the tests run as root), listening on 127.0.0.1 at a
free port with its socket in the directory, stopped and removed at the end."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.conftest import require_file

USER = "vscpg"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    path = found[-1] if found else "/usr/lib/postgresql/15/bin/initdb"
    require_file(path, "postgresql")
    return Path(path).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(command: list[str]) -> list[str]:
    """Run as the unprivileged user when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
            capture_output=True,
        )
    return ["runuser", "-u", USER, "--", *command]


class Postgres:
    """One cluster; `database()` gives the URL of a new, empty database in it."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="vsc-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            _as_user(["true"])  # makes the user
            shutil.chown(self.root, USER, USER)
        subprocess.run(
            _as_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400"
        )
        start = ["-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start"]
        subprocess.run(
            _as_user([str(self.bin / "pg_ctl"), "-D", str(self.data), *start]),
            check=True,
            capture_output=True,
        )
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        name = f"vsc_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(
            _as_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
