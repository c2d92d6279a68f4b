"""Admin commands on a database (`--database`) act on it as the servers left it: they never migrate its
schema, claim an empty one, or repair the data directory copy they run with; what they refuse, they refuse
in one line."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_vsc
from tests.server.idserver import start_server
from vsc_provider.server.db_schema import CURRENT


def _sql(url: str, sql: str) -> list[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description is not None else []


def _tables(url: str) -> list[Any]:
    return _sql(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")


def _one_error(result: Any, text: str) -> None:
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and text in errors[0], result.stderr


@pytest.fixture(scope="module")
def served(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A database a server has run on (stopped now) and its data directory."""
    database, data = postgres.database(), tmp_path_factory.mktemp("served") / "data"
    start_server(data, database=database).stop()
    return database, data


def test_an_empty_database_is_refused_and_left_empty(postgres: Any, served: tuple[str, Path]) -> None:
    empty = postgres.database()
    result = run_vsc("server", "device", "list", "--data", str(served[1]), "--database", empty, check=False)
    _one_error(result, "no vsc server has run on this database")
    assert _tables(empty) == []
    rotated = run_vsc("server", "rotate-tls", "--data", str(served[1]), "--database", empty, check=False)
    _one_error(rotated, "no vsc server has run on this database")
    assert _tables(empty) == [] and not (served[1] / "tls-next.pem").exists()


def test_a_database_with_tables_but_no_server_identity_is_refused(postgres: Any, served: tuple[str, Path]) -> None:
    data = served[1]
    fresh = postgres.database()
    _sql(fresh, "CREATE TABLE schema_version(version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
    _sql(fresh, "CREATE TABLE server_identity(name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    _sql(fresh, f"INSERT INTO schema_version VALUES ({CURRENT}, 0)")
    result = run_vsc("server", "activation", "create", "--data", str(data), "--database", fresh, "--user", "x",
                     check=False)  # fmt: skip
    _one_error(result, "no vsc server has run on this database")
    assert _sql(fresh, "SELECT * FROM server_identity") == []


@pytest.mark.parametrize("change", ["older", "newer"])
def test_a_database_at_another_schema_version_is_refused_and_not_migrated(
    postgres: Any, tmp_path: Path, change: str
) -> None:
    database = postgres.database()
    start_server(tmp_path / "data", database=database).stop()
    if change == "older":
        _sql(database, f"DELETE FROM schema_version WHERE version = {CURRENT}")
    else:
        _sql(database, f"INSERT INTO schema_version VALUES ({CURRENT + 1}, 0)")
    before = _sql(database, "SELECT version FROM schema_version ORDER BY version")
    result = run_vsc("server", "device", "list", "--data", str(tmp_path / "data"), "--database", database, check=False)
    _one_error(result, f"{change} than this release's {CURRENT}")
    assert _sql(database, "SELECT version FROM schema_version ORDER BY version") == before


def test_an_admin_command_repairs_nothing_in_the_copy_it_runs_with(served: tuple[str, Path], tmp_path: Path) -> None:
    """The server's start makes files its owner's alone and the data directory 0700; an admin command leaves
    the copy as it found it (and writes no file there)."""
    database, data = served
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    copy.chmod(0o750)
    (copy / "ca.pem").chmod(0o644)
    before = {p.name: (p.stat().st_mode, p.stat().st_mtime_ns) for p in copy.iterdir()}
    run_vsc("server", "device", "list", "--data", str(copy), "--database", database)
    run_vsc("server", "activation", "create", "--data", str(copy), "--database", database, "--user", "y")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o750
    assert {p.name: (p.stat().st_mode, p.stat().st_mtime_ns) for p in copy.iterdir()} == before


@pytest.mark.parametrize(
    "command",
    [
        ("device", "show", ""),
        ("device", "show", "a/b"),
        ("device", "action", "a/b", "renew"),
        ("request", "show", ""),
        ("request", "cancel", "a/b"),
    ],
    ids=repr,
)
def test_an_id_that_is_empty_or_holds_a_slash_is_not_found(served: tuple[str, Path], command: tuple[str, ...]) -> None:
    database, data = served
    result = run_vsc("server", *command[:2], "--data", str(data), "--database", database, *command[2:], check=False)
    _one_error(result, "Not Found")


@pytest.mark.parametrize(
    "command", [("device", "show"), ("device", "action", "renew"), ("request", "cancel")], ids=" ".join
)
def test_an_id_that_is_not_utf8_is_malformed(served: tuple[str, Path], command: tuple[str, ...]) -> None:
    database, data = served
    ids = ["\udcff-not-utf8", *command[2:]]  # the byte 0xff on the command line
    result = run_vsc("server", *command[:2], "--data", str(data), "--database", database, *ids, check=False)
    _one_error(result, "malformed")


@pytest.mark.parametrize("name", ["tls.pem", "escrow-key", "protocol-key.json", "admin.json"])
def test_a_copy_missing_a_file_is_refused_naming_it(served: tuple[str, Path], tmp_path: Path, name: str) -> None:
    database, data = served
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    (copy / name).unlink()
    result = run_vsc("server", "device", "list", "--data", str(copy), "--database", database, check=False)
    _one_error(result, f"has no {name}")
    assert not (copy / name).exists()


def test_file_and_database_errors_under_a_call_are_one_line(
    postgres: Any, served: tuple[str, Path], tmp_path: Path
) -> None:
    database, data = served
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    (copy / "escrow-key").unlink()
    (copy / "escrow-key").mkdir()  # present, but not a file that can be read
    result = run_vsc("server", "device", "list", "--data", str(copy), "--database", database, check=False)
    _one_error(result, "IsADirectoryError")

    broken = postgres.database()
    start_server(tmp_path / "broken", database=broken).stop()
    _sql(broken, "DROP TABLE devices CASCADE")
    result = run_vsc("server", "device", "list", "--data", str(tmp_path / "broken"), "--database", broken, check=False)
    _one_error(result, "UndefinedTable")


def test_request_bodies_are_read_under_the_http_api_rules(served: tuple[str, Path], tmp_path: Path) -> None:
    """The body limit (413 over HTTP) and the sound-JSON check (400) apply in-process too (bodies.py)."""
    database, data = served
    admin = ("--data", str(data), "--database", database)
    pdf = tmp_path / "big.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + b"\0" * (3 * 1024 * 1024 + 512 * 1024))  # over 4 MiB as base64url
    made = run_vsc("server", "request", "create", *admin, "--user", "u", "--kind", "auth", "--pdf", str(pdf),
                   check=False)  # fmt: skip
    _one_error(made, f"bodies are at most {4 * 1024 * 1024} bytes (too_large)")
    odd = run_vsc("server", "request", "create", *admin, "--user", "\udcff", "--kind", "auth", check=False)
    _one_error(odd, "malformed")
    link = run_vsc("server", "activation", "create", *admin, "--user", "\udcff", check=False)
    _one_error(link, "malformed")
