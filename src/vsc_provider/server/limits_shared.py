"""Token buckets kept in PostgreSQL, so that several instances on one database refuse a client at the same
total as one instance would.

One row per (bucket, client) in an UNLOGGED table (a counter lost in a database crash only forgives a few
requests; writing it costs no WAL flush). A take is one conditional UPSERT run as its own transaction: the
row lock of INSERT .. ON CONFLICT DO UPDATE makes concurrent takes queue, and its WHERE is evaluated on the
newest row, so no two instances spend the same token. Time is the database's clock, the one clock all
instances share. Rows of buckets that are full again say nothing a missing row would not: they are purged.
"""

from __future__ import annotations

import threading
import time

from vsc_provider.server.db_backend import Backend
from vsc_provider.server.errors import ProtocolError

PURGE_EVERY = 10.0  # seconds between deletions of rows whose bucket is full again (per process)

# the database's clock is EXTRACT(EPOCH FROM clock_timestamp()); a row's level is its tokens plus what flowed in
# since, at most the burst
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


class SharedBuckets:
    """Token buckets by client in the shared database: `rate` tokens a second up to `burst`."""

    local = False  # each call is a database round trip: callers on an event loop run it in a thread

    def __init__(self, backend: Backend, name: str, rate: float, burst: float, error: str, detail: str) -> None:
        self._b, self.name = backend, name
        self.rate, self.burst, self.error, self.detail = rate, burst, error, detail
        self._purged = 0.0
        self._purge_lock = threading.Lock()

    def _level(self, client: str) -> float:
        with self._b.read() as db:
            row = db.execute(_LEVEL, (self.burst, self.rate, self.name, client)).fetchone()
        return self.burst if row is None else float(row[0])

    def _refuse(self, level: float) -> ProtocolError:
        return ProtocolError(429, self.error, self.detail, retry_after=max(0.0, 1.0 - level) / self.rate)

    def check(self, client: str) -> None:
        """Refuse (429) while the client's bucket is empty, taking nothing."""
        level = self._level(client)
        if level < 1.0:
            raise self._refuse(level)

    def take(self, client: str) -> None:
        """Take one token, or refuse (429) when there is none."""
        self._purge()
        b, r = self.burst, self.rate
        with self._b.read() as db:  # one statement outside a transaction block: its own transaction
            taken = db.execute(_TAKE, (self.name, client, b, b, r, b, r)).fetchone()
        if taken is None:
            raise self._refuse(min(self._level(client), 0.999))

    def _purge(self) -> None:
        now = time.monotonic()
        with self._purge_lock:
            if now - self._purged < PURGE_EVERY:
                return
            self._purged = now
        full_after = self.burst / self.rate  # seconds after which any row is a full bucket again
        with self._b.read() as db:
            db.execute(
                "DELETE FROM rate_buckets WHERE name = ?"
                " AND since < EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION - ?",
                (self.name, full_after),
            )
