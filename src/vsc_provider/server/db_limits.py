"""The SQL of the rate limits' token buckets shared through PostgreSQL (server/limits_shared.py): a bucket's
level, a take, and the purge of rows whose bucket is full again. Time is the database's clock,
EXTRACT(EPOCH FROM clock_timestamp()), the one clock all instances share."""

from __future__ import annotations

from vsc_provider.server.db_backend import Backend

# a row's level is its tokens plus what flowed in since, at most the burst
_LEVEL = (
    "SELECT LEAST(?, tokens + GREATEST(EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION - since, 0) * ?)"
    " FROM rate_buckets WHERE name = ? AND client = ?"
)

_TAKE = (
    "INSERT INTO rate_buckets AS b(name, client, tokens, since)"
    " VALUES (?, ?, ? - 1, EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION)"
    " ON CONFLICT (name, client) DO UPDATE"
    " SET tokens = LEAST(?, b.tokens + GREATEST(EXCLUDED.since - b.since, 0) * ?) - 1,"
    " since = GREATEST(b.since, EXCLUDED.since)"
    " WHERE LEAST(?, b.tokens + GREATEST(EXCLUDED.since - b.since, 0) * ?) >= 1"
    " RETURNING tokens"
)


def level(backend: Backend, name: str, client: str, rate: float, burst: float) -> float | None:
    """The client's tokens in bucket NAME now; None when it has no row (a full bucket)."""
    with backend.read() as db:
        row = db.execute(_LEVEL, (burst, rate, name, client)).fetchone()
    return None if row is None else float(row[0])


def take(backend: Backend, name: str, client: str, rate: float, burst: float) -> bool:
    """Take one token (False when there is none): one conditional UPSERT outside a transaction block, so it
    is its own transaction and its row lock makes concurrent takes queue."""
    with backend.read() as db:
        taken = db.execute(_TAKE, (name, client, burst, burst, rate, burst, rate)).fetchone()
    return taken is not None


def purge(backend: Backend, name: str, full_after: float) -> None:
    """Delete bucket NAME's rows older than FULL_AFTER seconds (full again: a missing row says the same)."""
    with backend.read() as db:
        db.execute(
            "DELETE FROM rate_buckets WHERE name = ?"
            " AND since < EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION - ?",
            (name, full_after),
        )
