"""The two places the server's SQL runs: an SQLite file in the data directory (one process, serialised by
BEGIN IMMEDIATE) and PostgreSQL through a psycopg connection pool (several processes on one database).

Both speak the same SQL: `?` placeholders (rewritten to `%s` for psycopg), ON CONFLICT DO NOTHING, and a
row lock written as `{lock}` (FOR UPDATE on PostgreSQL; nothing on SQLite, whose write transactions are
exclusive already). A write is a function of one transaction, so PostgreSQL can run it again after a
deadlock or serialization failure. A write of one statement (write_one) is its own transaction: on PostgreSQL
one round trip instead of BEGIN, the statement and COMMIT.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from vsc_provider import sqlite_file

T = TypeVar("T")

log = logging.getLogger("vsc.server.db")

WRITE_TRIES = 8  # a PostgreSQL write run again at most this often after a deadlock / serialization failure


class DatabaseUnavailable(Exception):
    """The database cannot be opened or reached (a one-line reason)."""


class Rows(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """One connection inside a transaction (writes) or out of one (reads)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


class Backend(Protocol):
    dialect: str  # "sqlite" or "postgresql"

    def read(self) -> Any: ...  # a context manager giving a Tx

    def write(self, body: Callable[[Tx], T]) -> T: ...

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def compact(self) -> None: ...

    def close(self) -> None: ...


def sql_for(dialect: str, sql: str) -> str:
    """The statement as this dialect spells it."""
    return _postgres_sql(sql) if dialect == "postgresql" else sql.replace("{lock}", "")


@functools.lru_cache(maxsize=512)
def _postgres_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s").replace("{lock}", " FOR UPDATE")


class SqliteBackend:
    """One connection shared by the process's threads under a lock; writes BEGIN IMMEDIATE."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self._lock = threading.RLock()
        self._db = sqlite_file.connect(str(path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA secure_delete=ON")  # a sealed-over or deleted secret leaves no copy in free pages

    @contextmanager
    def read(self) -> Iterator[_SqliteTx]:
        with self._lock:
            yield _SqliteTx(self._db)

    def write(self, body: Callable[[Tx], T]) -> T:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = body(_SqliteTx(self._db))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement, atomic on its own; the rows it changed."""
        return self.write(lambda tx: tx.execute(sql, params).rowcount)

    def compact(self) -> None:
        """Rewritten secrets leave no old copy in the write-ahead log."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _SqliteTx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self._db.execute(sql_for("sqlite", sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        return self._db.executemany(sql_for("sqlite", sql), rows)


def _pg_params(params: Sequence[Any]) -> tuple[Any, ...]:
    # flags are INTEGER columns (as in the SQLite file): psycopg would send a Python bool as boolean
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


class _PostgresTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self._conn.execute(_postgres_sql(sql), _pg_params(params))  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        with self._conn.cursor() as cur:
            cur.executemany(_postgres_sql(sql), [_pg_params(r) for r in rows])


def pool_size() -> int:
    """Connections per server process: VSC_SERVER_DB_POOL (default 10)."""
    import os

    return max(2, int(os.environ.get("VSC_SERVER_DB_POOL", "10")))


class PostgresBackend:
    """A psycopg connection pool; each write is one READ COMMITTED transaction whose "happens once" steps are
    conditional UPDATEs, unique inserts or row locks, run again after a deadlock or serialization failure."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self._errors = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
        try:  # one connection first, for a quick and plain answer when the database cannot be reached
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as why:
            raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {_first_line(why)}") from None
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size(), kwargs={"autocommit": True}, open=False, name="vsc-server"
        )
        try:
            self._pool.open(wait=True, timeout=30.0)
        except Exception as exc:  # psycopg_pool.PoolTimeout
            self._pool.close()
            raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {_first_line(exc)}") from None

    @contextmanager
    def read(self) -> Iterator[_PostgresTx]:
        with self._pool.connection() as conn:
            yield _PostgresTx(conn)

    def write(self, body: Callable[[Tx], T]) -> T:
        def run() -> T:
            with self._pool.connection() as conn, conn.transaction():
                return body(_PostgresTx(conn))

        return self._retrying(run)

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement, atomic on its own, sent outside a transaction block (autocommit); the rows it changed."""

        def run() -> int:
            with self._pool.connection() as conn:
                return int(_PostgresTx(conn).execute(sql, params).rowcount)

        return self._retrying(run)

    def _retrying(self, run: Callable[[], T]) -> T:
        """RUN, and again after a serialization failure or a deadlock (WRITE_TRIES times in all)."""
        for attempt in range(WRITE_TRIES):
            try:
                return run()
            except self._errors as exc:
                if attempt == WRITE_TRIES - 1:
                    raise
                log.info("write ran into %s: running it again", type(exc).__name__)
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    def notify(self, channel: str, payload: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def compact(self) -> None:
        pass

    def close(self) -> None:
        self._pool.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def redact(url: str) -> str:
    """The database URL without its password (for messages and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_backend(data: Path, database: str | None) -> Backend:
    """SQLite in the data directory unless `database` is a postgresql:// URL."""
    if not database:
        return SqliteBackend(data / "server.sqlite")
    if database.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(database)
    raise DatabaseUnavailable("the database must be a postgresql:// URL (without one: SQLite in the data directory)")
