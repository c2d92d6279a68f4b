"""The server's SQLite file: activation codes, devices, certificates, spent nonces and migration tickets.

Every state change that must happen once (a code used, a nonce spent, a PIN try counted, a device
confirmed) is a single conditional UPDATE/DELETE inside BEGIN IMMEDIATE, so concurrent requests cannot
both win.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS activations(
    code_hash TEXT PRIMARY KEY, user TEXT NOT NULL, profile TEXT NOT NULL, created REAL NOT NULL,
    expires REAL NOT NULL, used REAL, device TEXT, ticket TEXT
);
CREATE TABLE IF NOT EXISTS devices(
    id TEXT PRIMARY KEY, user TEXT NOT NULL, profile TEXT NOT NULL, jwk TEXT NOT NULL, created REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'active', renew INTEGER NOT NULL DEFAULT 0, attested INTEGER NOT NULL DEFAULT 0,
    pin_verifier BLOB, server_secret BLOB, pin_failures INTEGER NOT NULL DEFAULT 0,
    pin_blocked_until REAL NOT NULL DEFAULT 0, pin_verifier_next BLOB, confirmed REAL
);
CREATE TABLE IF NOT EXISTS keys(
    device TEXT NOT NULL, key_id TEXT NOT NULL, usage TEXT NOT NULL, format TEXT NOT NULL, spki BLOB NOT NULL,
    cert BLOB, escrow BLOB, created REAL NOT NULL, active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS keys_by_device ON keys(device);
DROP TABLE IF EXISTS nonces;
CREATE TABLE IF NOT EXISTS spent_nonces(value TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS spent_nonces_by_expiry ON spent_nonces(expires);
CREATE TABLE IF NOT EXISTS tickets(
    id TEXT PRIMARY KEY, device TEXT NOT NULL, target TEXT NOT NULL, created REAL NOT NULL,
    target_key TEXT, state TEXT NOT NULL DEFAULT 'issued'
);
"""

# columns added after the first release, for files made before them: (table, column, declaration, and
# the statement that fills the column for the rows already there, if its default is not right for them)
ADDED_COLUMNS: tuple[tuple[str, str, str, str | None], ...] = (
    ("devices", "pin_verifier_next", "BLOB", None),
    ("tickets", "target_key", "TEXT", None),
    ("tickets", "state", "TEXT NOT NULL DEFAULT 'issued'", None),
    # devices activated before confirmation existed are in use: confirmed as of their activation
    ("devices", "confirmed", "REAL", "UPDATE devices SET confirmed = created"),
    # when a key was retired (its certificate revoked); keys retired before: as of their creation
    ("keys", "retired", "REAL", "UPDATE keys SET retired = created WHERE active = 0"),
    # the certificate's serial number (hex), for OCSP; filled for older rows by fill_serials()
    ("keys", "serial", "TEXT", None),
    # the card's SO PIN (sealed), sent at activation, so that the administrator's unblock reaches the card
    ("devices", "so_pin", "BLOB", None),
    ("devices", "unblock", "INTEGER NOT NULL DEFAULT 0", None),
)


def cert_serial(der: bytes | None) -> str | None:
    """A certificate's serial number as lower-case hex (what OCSP and the CRL name it by)."""
    if der is None:
        return None
    from cryptography import x509

    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass
class Device:
    id: str
    user: str
    profile: str
    jwk: dict[str, Any]
    state: str
    renew: bool
    pin_verifier: bytes | None
    server_secret: bytes | None
    pin_failures: int
    pin_blocked_until: float
    pin_verifier_next: bytes | None = None
    created: float = 0.0
    confirmed: float | None = None  # the first request signed with its kid; None while only activated
    so_pin: bytes | None = None  # stored at registration only (read with Database.so_pin)


class NewKey(NamedTuple):
    """A key row to store: what the server certified (or generated and escrowed) for a device."""

    device: str
    key_id: str
    usage: str
    format: str
    spki: bytes
    cert: bytes | None
    escrow: bytes | None = None


_DEVICE_COLUMNS = (
    "id, user, profile, jwk, state, renew, pin_verifier, server_secret, pin_failures, pin_blocked_until,"
    " pin_verifier_next, created, confirmed"
)


# a device's secrets held by the server: stored sealed (FieldSealer), never in clear
SEALED_COLUMNS = ("pin_verifier", "server_secret", "pin_verifier_next", "so_pin")


class FieldSealer(Protocol):
    def seal_field(self, device: str, name: str, plain: bytes) -> bytes: ...

    def unseal_field(self, device: str, name: str, blob: bytes) -> bytes: ...


class Database:
    def __init__(self, path: Path, sealer: FieldSealer) -> None:
        self._sealer = sealer
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA secure_delete=ON")  # a sealed-over or deleted secret leaves no copy in free pages
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for table, column, declaration, backfill in ADDED_COLUMNS:
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                    if backfill:
                        db.execute(backfill)
            db.execute("CREATE INDEX IF NOT EXISTS keys_by_serial ON keys(serial)")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- nonces -------------------------------------------------------------------------------

    def spend_nonce(self, value: str, expires: float) -> bool:
        """Record a (valid, unexpired) nonce as used; False if it was used already. Rows last until the
        nonce would have expired anyway, so the table holds at most what signed requests spent recently."""
        with self.transaction() as db:
            db.execute("DELETE FROM spent_nonces WHERE expires < ?", (time.time(),))
            return (
                db.execute(
                    "INSERT OR IGNORE INTO spent_nonces(value, expires) VALUES (?, ?)", (value, expires)
                ).rowcount
                == 1
            )

    def open_tickets(self, device_id: str, since: float) -> int:
        """Migration tickets issued to a device since a time and not completed."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM tickets WHERE device = ? AND state = 'issued' AND created >= ?",
                (device_id, since),
            ).fetchone()
        return int(row[0])

    # --- activation codes ---------------------------------------------------------------------

    def add_activation(self, code: str, user: str, profile: str, ttl: float, ticket: str | None = None) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO activations(code_hash, user, profile, created, expires, ticket) VALUES (?, ?, ?, ?, ?, ?)",
                (code_hash(code), user, profile, now, now + ttl, ticket),
            )

    def activation(self, code: str) -> tuple[str, str] | None:
        """(user, profile) of a usable code, or None for an unknown, used or expired one."""
        with self._lock:
            row = self._db.execute(
                "SELECT user, profile FROM activations WHERE code_hash = ? AND used IS NULL AND expires >= ?",
                (code_hash(code), time.time()),
            ).fetchone()
        return (row[0], row[1]) if row else None

    @staticmethod
    def _use_activation(db: sqlite3.Connection, code: str, device: str) -> bool:
        cur = db.execute(
            "UPDATE activations SET used = ?, device = ? WHERE code_hash = ? AND used IS NULL AND expires >= ?",
            (time.time(), device, code_hash(code), time.time()),
        )
        return cur.rowcount == 1

    def code_device(self, code: str) -> str | None:
        """The device that used an activation code (not a migration ticket's code), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT device FROM activations WHERE code_hash = ? AND used IS NOT NULL AND ticket IS NULL",
                (code_hash(code),),
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    # --- devices ------------------------------------------------------------------------------

    def register_device(
        self, dev: Device, attested: bool, keys: list[NewKey], code: str | None = None, ticket: str | None = None
    ) -> bool:
        """Store an activated device and its keys, using its activation code or migration ticket once:
        False (and nothing stored) when the code or ticket was used meanwhile."""
        with self.transaction() as db:
            if code is not None:
                if not self._use_activation(db, code, dev.id):
                    return False
            elif db.execute("SELECT 1 FROM tickets WHERE id = ?", (ticket,)).fetchone():
                return False
            else:
                db.execute(
                    "INSERT INTO tickets(id, device, target, created) VALUES (?, ?, 'received', ?)",
                    (ticket, dev.id, time.time()),
                )
            self._insert_device(db, dev, attested)
            for key in keys:
                self._insert_key(db, key)
        return True

    def _seal(self, device_id: str, name: str, value: bytes | None) -> bytes | None:
        return None if value is None else self._sealer.seal_field(device_id, name, value)

    def _unseal(self, device_id: str, name: str, value: bytes | None) -> bytes | None:
        return None if value is None else self._sealer.unseal_field(device_id, name, bytes(value))

    def seal_clear_fields(self) -> int:
        """Seal the device secrets an earlier version stored in clear; how many were."""
        done = 0
        with self.transaction() as db:
            for name in SEALED_COLUMNS:
                rows = db.execute(f"SELECT id, {name} FROM devices WHERE {name} IS NOT NULL").fetchall()  # noqa: S608 - constant columns
                for device_id, value in rows:
                    if self._unseal(device_id, name, value) == bytes(value):  # not sealed yet
                        sealed = self._seal(device_id, name, bytes(value))
                        db.execute(f"UPDATE devices SET {name} = ? WHERE id = ?", (sealed, device_id))  # noqa: S608
                        done += 1
        if done:
            with self._lock:  # the clear pages are gone from the log too
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return done

    def _insert_device(self, db: sqlite3.Connection, dev: Device, attested: bool) -> None:
        db.execute(
            "INSERT INTO devices(id, user, profile, jwk, created, attested, pin_verifier, server_secret, so_pin)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dev.id,
                dev.user,
                dev.profile,
                json.dumps(dev.jwk),
                time.time(),
                int(attested),
                self._seal(dev.id, "pin_verifier", dev.pin_verifier),
                self._seal(dev.id, "server_secret", dev.server_secret),
                self._seal(dev.id, "so_pin", dev.so_pin),
            ),
        )

    def device(self, device_id: str) -> Device | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device_id,)).fetchone()  # noqa: S608 - constant columns
        if row is None:
            return None
        return Device(
            row[0],
            row[1],
            row[2],
            json.loads(row[3]),
            row[4],
            bool(row[5]),
            self._unseal(row[0], "pin_verifier", row[6]),
            self._unseal(row[0], "server_secret", row[7]),
            row[8],
            row[9],
            self._unseal(row[0], "pin_verifier_next", row[10]),
            row[11],
            row[12],
        )

    def so_pin(self, device_id: str) -> bytes | None:
        """The card's SO PIN as its device sent it at activation (None for devices activated before)."""
        with self._lock:
            row = self._db.execute("SELECT so_pin FROM devices WHERE id = ?", (device_id,)).fetchone()
        return None if row is None else self._unseal(device_id, "so_pin", row[0])

    def unblock_pending(self, device_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT unblock FROM devices WHERE id = ?", (device_id,)).fetchone()
        return bool(row and row[0])

    def devices(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, user, profile, state, renew, pin_failures, created, confirmed FROM devices ORDER BY created"
            ).fetchall()
        names = ("id", "user", "profile", "state", "renew", "pin_failures", "created", "confirmed")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def set_device(self, device_id: str, **fields: Any) -> bool:
        """Update columns named by the code (never by a request); device secrets are sealed on the way."""
        fields = {k: self._seal(device_id, k, v) if k in SEALED_COLUMNS else v for k, v in fields.items()}
        assignments = ", ".join(f"{name} = ?" for name in fields)
        sql = f"UPDATE devices SET {assignments} WHERE id = ?"  # noqa: S608 - column names from the code
        with self.transaction() as db:
            return db.execute(sql, (*fields.values(), device_id)).rowcount == 1

    def confirm_device(self, device_id: str) -> None:
        """The device's first request under its kid: it got its activation answer, which is not replayed since."""
        with self.transaction() as db:
            db.execute("UPDATE devices SET confirmed = ? WHERE id = ? AND confirmed IS NULL", (time.time(), device_id))

    def drop_unconfirmed(self, activated_before: float, limit: int) -> list[str]:
        """Delete (keys retired) at most `limit` devices never confirmed since an activation before the time given."""
        with self.transaction() as db:
            ids = [
                str(row[0])
                for row in db.execute(
                    "SELECT id FROM devices WHERE confirmed IS NULL AND state = 'active' AND created < ?"
                    " ORDER BY created LIMIT ?",
                    (activated_before, limit),
                )
            ]
            for device_id in ids:
                self._retire(db, device_id, "deleted")
        return ids

    @staticmethod
    def _retire(db: sqlite3.Connection, device_id: str, state: str) -> None:
        db.execute("UPDATE devices SET state = ? WHERE id = ?", (state, device_id))
        db.execute("UPDATE keys SET active = 0, retired = ? WHERE device = ? AND active = 1", (time.time(), device_id))

    def end_device(self, device_id: str, state: str) -> None:
        """The device leaves the 'active' state (deleted, migrated): its keys are retired with it."""
        with self.transaction() as db:
            self._retire(db, device_id, state)

    def pin_try(self, device_id: str, max_tries: int, now: float) -> tuple[int, float]:
        """(wrong tries so far, blocked until) of a device; the try is counted unless the PIN is blocked
        (max_tries reached) or in a waiting period, in one transaction so concurrent tries all count."""
        with self.transaction() as db:
            failures, blocked_until = db.execute(
                "SELECT pin_failures, pin_blocked_until FROM devices WHERE id = ?", (device_id,)
            ).fetchone()
            if failures < max_tries and now >= blocked_until:
                db.execute("UPDATE devices SET pin_failures = ? WHERE id = ?", (failures + 1, device_id))
        return int(failures), float(blocked_until)

    @staticmethod
    def _insert_key(db: sqlite3.Connection, key: NewKey) -> None:
        db.execute(
            "INSERT INTO keys(device, key_id, usage, format, spki, cert, escrow, created, serial)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, time.time(), cert_serial(key.cert)),
        )

    # --- revocation ---------------------------------------------------------------------------

    def fill_serials(self) -> None:
        """Serial numbers for certificates stored before the column existed."""
        with self.transaction() as db:
            rows = db.execute("SELECT rowid, cert FROM keys WHERE cert IS NOT NULL AND serial IS NULL").fetchall()
            for rowid, cert in rows:
                db.execute("UPDATE keys SET serial = ? WHERE rowid = ?", (cert_serial(bytes(cert)), rowid))

    def revoked(self) -> list[tuple[str, float, str]]:
        """(serial hex, retired at, the device's state) of every certificate whose key is retired."""
        with self._lock:
            rows = self._db.execute(
                "SELECT k.serial, k.retired, d.state FROM keys k JOIN devices d ON d.id = k.device"
                " WHERE k.active = 0 AND k.serial IS NOT NULL ORDER BY k.rowid"
            ).fetchall()
        return [(str(r[0]), float(r[1] or 0.0), str(r[2])) for r in rows]

    def certificate_state(self, serial: str) -> tuple[bool, float, str] | None:
        """(still active, retired at, the device's state) of the certificate with this serial; None if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT k.active, k.retired, d.state FROM keys k JOIN devices d ON d.id = k.device WHERE k.serial = ?",
                (serial,),
            ).fetchone()
        return None if row is None else (bool(row[0]), float(row[1] or 0.0), str(row[2]))

    def renew_keys(self, device_id: str, keys: list[NewKey]) -> None:
        """The renewed keys replace the device's generated ones (imported keys stay); the renew flag is cleared."""
        with self.transaction() as db:
            db.execute(
                "UPDATE keys SET active = 0, retired = ? WHERE device = ? AND format != 'imported' AND active = 1",
                (time.time(), device_id),
            )
            for key in keys:
                self._insert_key(db, key)
            db.execute("UPDATE devices SET renew = 0 WHERE id = ?", (device_id,))

    def set_escrow(self, rowid: int, blob: bytes) -> None:
        with self.transaction() as db:
            db.execute("UPDATE keys SET escrow = ? WHERE rowid = ?", (blob, rowid))

    def escrow_rows(self) -> list[tuple[int, str, str, bytes]]:
        """(rowid, device, key id, blob) of every escrowed key."""
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, device, key_id, escrow FROM keys WHERE escrow IS NOT NULL"
            ).fetchall()
        return [(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def ticket(self, ticket_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT device, target, target_key, state FROM tickets WHERE id = ?", (ticket_id,)
            ).fetchone()
        return None if row is None else {"device": row[0], "target": row[1], "target_key": row[2], "state": row[3]}

    def add_ticket(self, ticket_id: str, device: str, target: str, target_key: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO tickets(id, device, target, created, target_key, state) VALUES (?, ?, ?, ?, ?, 'issued')",
                (ticket_id, device, target, time.time(), target_key),
            )

    def complete_ticket(self, ticket_id: str, device_id: str) -> bool:
        """Close an issued migration ticket once and mark its device migrated; False if it was closed already."""
        with self.transaction() as db:
            done = db.execute("UPDATE tickets SET state = 'done' WHERE id = ? AND state = 'issued'", (ticket_id,))
            if done.rowcount != 1:
                return False
            self._retire(db, device_id, "migrated")
        return True

    def active_keys(self, device: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, usage, format, spki, cert, escrow FROM keys WHERE device = ? AND active = 1"
                " ORDER BY rowid",
                (device,),
            ).fetchall()
        return [
            {"key_id": r[0], "usage": r[1], "format": r[2], "spki": r[3], "cert": r[4], "escrow": r[5]} for r in rows
        ]
