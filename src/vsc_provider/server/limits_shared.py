"""Token buckets kept in PostgreSQL, so that several instances on one database refuse a client at the same
total as one instance would.

One row per (bucket, client) in an UNLOGGED table (a counter lost in a database crash only forgives a few
requests; writing it costs no WAL flush). A take is one conditional UPSERT run as its own transaction: the
row lock of INSERT .. ON CONFLICT DO UPDATE makes concurrent takes queue, and its WHERE is evaluated on the
newest row, so no two instances spend the same token. Time is the database's clock, the one clock all
instances share. Rows of buckets that are full again say nothing a missing row would not: they are purged.
The statements are in server/db_limits.py.
"""

from __future__ import annotations

import threading
import time

from vsc_provider.server import db_limits
from vsc_provider.server.db_backend import Backend
from vsc_provider.server.errors import ProtocolError

PURGE_EVERY = 10.0  # seconds between deletions of rows whose bucket is full again (per process)


class SharedBuckets:
    """Token buckets by client in the shared database: `rate` tokens a second up to `burst`."""

    local = False  # each call is a database round trip: callers on an event loop run it in a thread

    def __init__(self, backend: Backend, name: str, rate: float, burst: float, error: str, detail: str) -> None:
        self._b, self.name = backend, name
        self.rate, self.burst, self.error, self.detail = rate, burst, error, detail
        self._purged = 0.0
        self._purge_lock = threading.Lock()

    def _level(self, client: str) -> float:
        found = db_limits.level(self._b, self.name, client, self.rate, self.burst)
        return self.burst if found is None else found

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
        if not db_limits.take(self._b, self.name, client, self.rate, self.burst):
            raise self._refuse(min(self._level(client), 0.999))

    def _purge(self) -> None:
        now = time.monotonic()
        with self._purge_lock:
            if now - self._purged < PURGE_EVERY:
                return
            self._purged = now
        full_after = self.burst / self.rate  # seconds after which any row is a full bucket again
        db_limits.purge(self._b, self.name, full_after)
