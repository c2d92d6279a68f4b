"""The SQL of relying parties and their authentication / signing requests (part of the server's Database)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vsc_provider.server.db_backend import Backend, Tx

# A device's requests still waiting for its answer (parameters: the device, now), as FROM ... WHERE.
_PENDING_FOR_DEVICE = (
    "FROM request_targets t JOIN requests r ON r.id = t.request"
    " WHERE t.device = ? AND r.state = 'PENDING' AND r.expires > ?"
)


def _pending_load(db: Tx, device: str, now: float) -> tuple[int, int]:
    sizes = "COUNT(*), COALESCE(SUM(LENGTH(t.document)), 0)"
    row = db.execute(f"SELECT {sizes} {_PENDING_FOR_DEVICE}", (device, now)).fetchone()
    return int(row[0]), int(row[1])


class RequestTables:
    """Relying parties, requests and the per-device documents they send; a request is decided once."""

    _b: Backend
    _lock_device: Callable[[Tx, str], Any]  # Database's: the device's row locked for the rest of the transaction

    def add_relying_party(self, rp_id: str, name: str, key_hash: str | None) -> bool:
        """A new relying party (the admin's built-in one has no key); False when the name is taken."""

        def add(tx: Tx) -> bool:
            cur = tx.execute(
                "INSERT INTO relying_parties(id, name, key_hash, created) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (rp_id, name, key_hash, time.time()),
            )
            return cur.rowcount == 1

        return self._b.write(add)

    def relying_party(self, *, key_hash: str | None = None, rp_id: str | None = None) -> tuple[str, str] | None:
        """(id, name) of the relying party with this API key hash, or this id."""
        with self._b.read() as db:
            if key_hash is not None:
                row = db.execute("SELECT id, name FROM relying_parties WHERE key_hash = ?", (key_hash,)).fetchone()
            else:
                row = db.execute("SELECT id, name FROM relying_parties WHERE id = ?", (rp_id,)).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def user_devices(self, user: str) -> list[str]:
        with self._b.read() as db:
            rows = db.execute(
                "SELECT id FROM devices WHERE \"user\" = ? AND state = 'active' ORDER BY created", (user,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def add_request(
        self, row: dict[str, Any], targets: list[tuple[str, str, str, str]], cap: tuple[int, int] | None = None
    ) -> bool:
        """A new PENDING request and, per device it goes to, (device, key id, signed document, display hash).
        `cap` (requests, characters of their documents): the request is refused (False) when a device it goes to
        has that many pending already, counted and inserted under the devices' row locks (taken in one order)
        in one transaction, so instances racing on one database cannot together pass the cap."""
        names = ("id", "rp", "kind", "alg", "format", "input", "callback", "named_device", "created", "expires")

        def add(tx: Tx) -> bool:
            if cap is not None:
                for device in sorted({t[0] for t in targets}):
                    self._lock_device(tx, device)
                    count, chars = _pending_load(tx, device, row["created"])
                    if count >= cap[0] or chars >= cap[1]:
                        return False
            tx.execute(
                f"INSERT INTO requests({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",  # noqa: S608
                tuple(row[n] for n in names),
            )
            tx.executemany(
                "INSERT INTO request_targets(request, device, key_id, document, display_hash) VALUES (?, ?, ?, ?, ?)",
                [(row["id"], *t) for t in targets],
            )
            return True

        return self._b.write(add)

    _REQUEST_COLUMNS = (
        "id", "rp", "kind", "alg", "format", "input", "callback", "named_device", "state", "created", "expires",
        "decided", "device", "signature", "certificate",
    )  # fmt: skip

    def request(self, request_id: str) -> dict[str, Any] | None:
        columns = ", ".join(self._REQUEST_COLUMNS)
        with self._b.read() as db:
            row = db.execute(f"SELECT {columns} FROM requests WHERE id = ?", (request_id,)).fetchone()  # noqa: S608 - constant columns
        return None if row is None else dict(zip(self._REQUEST_COLUMNS, row, strict=True))

    def request_target(self, request_id: str, device: str) -> dict[str, Any] | None:
        """What the request asks of one device: {key_id, document, display_hash}, or None if not sent to it."""
        with self._b.read() as db:
            row = db.execute(
                "SELECT key_id, document, display_hash FROM request_targets WHERE request = ? AND device = ?",
                (request_id, device),
            ).fetchone()
        return None if row is None else {"key_id": row[0], "document": row[1], "display_hash": row[2]}

    def request_devices(self, request_id: str) -> list[str]:
        with self._b.read() as db:
            rows = db.execute("SELECT device FROM request_targets WHERE request = ?", (request_id,)).fetchall()
        return [str(r[0]) for r in rows]

    def pending_documents(self, device: str, now: float) -> list[tuple[str, str]]:
        """(id, signed document) of the device's PENDING, unexpired requests, oldest first."""
        with self._b.read() as db:
            query = f"SELECT r.id, t.document {_PENDING_FOR_DEVICE} ORDER BY r.created"
            rows = db.execute(query, (device, now)).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def pending_load(self, device: str, now: float) -> tuple[int, int]:
        """(how many, total characters of their documents) of the device's PENDING, unexpired requests."""
        with self._b.read() as db:
            return _pending_load(db, device, now)

    def decide_request(
        self,
        request_id: str,
        state: str,
        now: float,
        device: str | None = None,
        signature: str | None = None,
        certificate: bytes | None = None,
    ) -> bool:
        """PENDING -> a final state, once: False when it was decided, cancelled or expired meanwhile.
        EXPIRED is set only past `expires`, every other state only before it."""
        # the expiry test in the statement: EXPIRED needs expires <= now, every other state expires > now
        expiry = "expires <= ?" if state == "EXPIRED" else "expires > ?"

        sql = (
            "UPDATE requests SET state = ?, decided = ?, device = COALESCE(?, device), signature = ?,"  # noqa: S608
            f" certificate = ? WHERE id = ? AND state = 'PENDING' AND {expiry}"
        )
        return self._b.write_one(sql, (state, now, device, signature, certificate, request_id, now)) == 1

    def due_requests(self, now: float, limit: int) -> list[str]:
        """Ids of PENDING requests past their expiry (for the sweep that stores them EXPIRED)."""
        with self._b.read() as db:
            rows = db.execute(
                "SELECT id FROM requests WHERE state = 'PENDING' AND expires <= ? ORDER BY expires LIMIT ?",
                (now, limit),
            ).fetchall()
        return [str(r[0]) for r in rows]
