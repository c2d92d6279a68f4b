"""An admin call run in this process on the server's storage (`vsc server ... --database URL`), for an admin
on any machine that holds a copy of the data directory: the same handlers as the HTTP API (admin_calls.py),
after the same check `vsc server run` makes that the data directory belongs to the database. A request made
here reaches devices connected to any instance through the database's LISTEN/NOTIFY (push_bus.py), and a
callback it triggers is posted before the command returns."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from vsc_provider.provisioning import wire
from vsc_provider.server import admin_calls, bodies, tls
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.state import IdentityServer

CALLBACK_WAIT = 30.0  # seconds a command waits at most for the callbacks it triggered


class LocalAdminError(Exception):
    """The call could not run or was refused (a one-line reason)."""


# what a copy of the data directory must hold for the calls (made by the server's first start: never made here)
COPY_FILES = ("ca.key", "ca.pem", "protocol-key.json", "escrow-key", "tls.key", "tls.pem", "admin.json")


def _open(data: Path, database: str | None) -> IdentityServer:
    """The server's state for an admin call: the database as the servers left it (not migrated, nothing
    repaired), refused when it is at another schema version, when no server has run on it, or when DATA is
    not a copy of the data directory it belongs to."""
    from vsc_provider.server.db_backend import DatabaseUnavailable
    from vsc_provider.server.state import WrongDataDirectory

    if not (data / "ca.key").exists() or not (data / "server.json").exists():
        raise LocalAdminError(f"no server has run with --data {data} (copy the data directory of one that has)")
    for name in COPY_FILES:
        if not (data / name).exists():
            raise LocalAdminError(f"{data} has no {name}: copy it from the data directory of a server on this database")
    try:
        return IdentityServer(data, tls.hosts_of(data / "tls.pem"), database, admin=True)
    except (DatabaseUnavailable, WrongDataDirectory) as exc:
        raise LocalAdminError(str(exc)) from None


def _failures() -> tuple[type[BaseException], ...]:
    """What the storage or the data directory's files may raise under a call: one line each, never a traceback."""
    import sqlite3

    try:
        import psycopg
    except ImportError:  # SQLite only
        return (OSError, sqlite3.Error)
    return (OSError, sqlite3.Error, psycopg.Error)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def check_belongs(data: Path, database: str | None) -> None:
    try:
        _open(data, database).db.close()
    except _failures() as exc:
        raise LocalAdminError(_one_line(exc)) from None


def call(data: Path, database: str | None, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """The answer the running server would give to the admin's METHOD PATH with BODY."""

    found = admin_calls.find(method, path)
    if found is None:  # an id that is empty or holds a '/': no such route, as over HTTP
        raise LocalAdminError("Not Found (http)")
    handler, params = found
    try:
        wire.sound_json(params)
    except ValueError:  # a lone surrogate (bytes that are not UTF-8 on the command line)
        raise LocalAdminError("an id is not valid Unicode (malformed)") from None
    try:
        if handler.body_limit:  # read as the HTTP API reads it (bodies.py)
            body = bodies.parse(bodies.encode(body), handler.body_limit)
        srv = _open(data, database)
        try:
            return asyncio.run(_run(srv, handler, params, body))
        finally:
            srv.db.close()
    except ProtocolError as exc:
        raise LocalAdminError(f"{exc.detail} ({exc.error})") from None
    except _failures() as exc:
        raise LocalAdminError(_one_line(exc)) from None


async def _run(
    srv: IdentityServer, handler: admin_calls.AdminCall, params: dict[str, str], body: Any
) -> dict[str, Any]:
    srv.outbox.bind(asyncio.get_running_loop())
    try:
        return await asyncio.to_thread(handler.run, srv, params, body)
    finally:
        await srv.outbox.drain(CALLBACK_WAIT)
