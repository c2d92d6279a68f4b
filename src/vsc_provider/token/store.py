"""The persistent store: one SQLite file shared by every process that uses the cards.

SQLite in WAL mode gives atomic commits (a killed writer leaves the old or the new state) and safe
concurrent writers. A process learns that another one changed something from the change signal (8 bytes in
a file beside the store, mapped by every process and rewritten after each commit: one memory read per
check), then `PRAGMA data_version` confirms it before anything is re-read.
Object ids are AUTOINCREMENT so a deleted object's handle is never reused for another object.
"""

from __future__ import annotations

import json
import mmap
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from vsc_provider import sqlite_file

SCHEMA_VERSION = 2
MACED_SCHEMA = 2  # from this version every card's server binding carries its MAC (token/binding.py)
BUSY_TIMEOUT_MS = 30000  # how long a write waits for another process's write lock

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    serial TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created REAL NOT NULL,
    policy TEXT NOT NULL,
    kdf TEXT NOT NULL,
    user_salt BLOB,
    user_wrapped BLOB,
    so_salt BLOB NOT NULL,
    so_wrapped BLOB NOT NULL,
    user_failures INTEGER NOT NULL DEFAULT 0,
    user_blocked_until REAL NOT NULL DEFAULT 0,
    so_failures INTEGER NOT NULL DEFAULT 0,
    so_blocked_until REAL NOT NULL DEFAULT 0,
    server TEXT,
    device_key TEXT
);
CREATE TABLE IF NOT EXISTS objects(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    card_id INTEGER NOT NULL REFERENCES cards(id) ON DELETE CASCADE,
    uid BLOB NOT NULL,
    attrs TEXT NOT NULL,
    secret BLOB
);
CREATE INDEX IF NOT EXISTS objects_by_card ON objects(card_id);
CREATE TABLE IF NOT EXISTS audit(
    card_id INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    block BLOB NOT NULL,
    PRIMARY KEY(card_id, first_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_heads(
    card_id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    signature BLOB NOT NULL,
    sealed_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_journals(name TEXT PRIMARY KEY, folded INTEGER NOT NULL);
"""


# Records are immutable tuples: the engine replaces a card's record when the store changes, and C_GetTokenInfo's
# cache relies on that (an identity check).
class CardRecord(NamedTuple):
    id: int
    serial: str
    label: str
    created: float
    policy: dict[str, Any]
    kdf: dict[str, Any]
    user_salt: bytes | None
    user_wrapped: bytes | None
    so_salt: bytes
    so_wrapped: bytes
    user_failures: int = 0
    user_blocked_until: float = 0.0
    so_failures: int = 0
    so_blocked_until: float = 0.0
    server: dict[str, Any] | None = None
    device_key: dict[str, Any] | None = None  # the back end of the card's device-key layer (token/card_layer.py)


class ObjectRecord(NamedTuple):
    id: int
    card_id: int
    uid: bytes
    attrs: dict[int, bytes]
    secret: bytes | None = None  # sealed key material

    def __repr__(self) -> str:
        return f"ObjectRecord(id={self.id}, card_id={self.card_id}, uid={self.uid.hex()})"


def encode_attrs(attrs: dict[int, bytes]) -> str:
    return json.dumps({str(k): v.hex() for k, v in attrs.items()}, separators=(",", ":"))


def decode_attrs(text: str) -> dict[int, bytes]:
    return {int(k): bytes.fromhex(v) for k, v in json.loads(text).items()}


_CARD_COLUMNS = (
    "id, serial, label, created, policy, kdf, user_salt, user_wrapped, so_salt, so_wrapped, "
    "user_failures, user_blocked_until, so_failures, so_blocked_until, server, device_key"
)


_UPDATABLE = frozenset(_CARD_COLUMNS.replace(" ", "").split(",")) - {"id"}


def _card(row: tuple[Any, ...]) -> CardRecord:
    return CardRecord(
        id=row[0],
        serial=row[1],
        label=row[2],
        created=row[3],
        policy=json.loads(row[4]),
        kdf=json.loads(row[5]),
        user_salt=row[6],
        user_wrapped=row[7],
        so_salt=row[8],
        so_wrapped=row[9],
        user_failures=row[10],
        user_blocked_until=row[11],
        so_failures=row[12],
        so_blocked_until=row[13],
        server=json.loads(row[14]) if row[14] else None,
        device_key=json.loads(row[15]) if row[15] else None,
    )


class ChangeSignal:
    """8 bytes in `<store>-signal`, shared memory between the processes using the store. Every committed
    write rewrites them with fresh random bytes, so any change of value means "someone committed since";
    lost updates between two writers do not matter, as each rewrites after its own commit."""

    SIZE = 8

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < self.SIZE:
                os.ftruncate(fd, self.SIZE)
            self.map = mmap.mmap(fd, self.SIZE)  # read as map[SIGNAL_VALUE] on hot paths
        finally:
            os.close(fd)

    def read(self) -> bytes:
        return self.map[SIGNAL_VALUE]

    def bump(self) -> None:
        self.map[SIGNAL_VALUE] = os.urandom(self.SIZE)


# The signal's value within its map. Hot paths (Engine.poll, C_SignInit's prepared path) read
# `map[SIGNAL_VALUE]` themselves: as fast as a literal slice, and a method call would add to every call.
SIGNAL_VALUE = slice(0, ChangeSignal.SIZE)


class Store:
    """All reads and writes of the store file; one connection per process, guarded by a lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        self.lock = threading.RLock()
        old_umask = os.umask(0o077)
        try:
            self._db = sqlite_file.connect(self.path)
            self.signal = ChangeSignal(self.path + "-signal")
        finally:
            os.umask(old_umask)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA secure_delete=ON")
        with self.transaction() as db:
            sqlite_file.create_schema(db, SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(cards)")}
            if "device_key" not in columns:  # a store from before device-key back ends: its cards are `file`
                db.execute("ALTER TABLE cards ADD COLUMN device_key TEXT")
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @staticmethod
    def meta(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @staticmethod
    def delete_meta(db: sqlite3.Connection, key: str) -> bool:
        return db.execute("DELETE FROM meta WHERE key = ?", (key,)).rowcount > 0

    @contextmanager
    def transaction(self, signal: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE takes the write lock first, so read-modify-write is race-free.
        `signal=False`: a write no other process needs to take in (the audit log) leaves the change signal
        alone, so hosts signing at once do not reload their cards after each other's audit writes."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            changes = self._db.total_changes
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself fails (disk full, I/O error): never leave the transaction open.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            if signal and self._db.total_changes != changes:
                self.signal.bump()  # after the commit: a process that sees the new value also sees the data

    @contextmanager
    def audit_transaction(self, busy_ms: int | None = None) -> Iterator[sqlite3.Connection]:
        """A write of audit entries: no change signal, and without the fsync of synchronous=FULL. In WAL mode
        a commit with synchronous=NORMAL survives the process being killed (the WAL is written before COMMIT
        returns); only a power loss can take back the last commits. `busy_ms`: wait at most this long for
        another writer (sqlite3.OperationalError after it), instead of the store's 30 s."""
        with self.lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            if busy_ms is not None:
                self._db.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            try:
                with self.transaction(signal=False) as db:
                    yield db
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
                if busy_ms is not None:
                    self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads outside a write transaction, under this process's connection lock."""
        with self.lock:
            yield self._db

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: what is read inside it agrees (one state of the file), under the connection lock."""
        with self.lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def read_meta(self, key: str) -> str | None:
        """A meta value, read outside any write transaction."""
        with self.lock:
            return self.meta(self._db, key)

    def data_version(self) -> int:
        """Changes when another connection commits (cheap: no file read when nothing changed)."""
        with self.lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def load(self, with_objects: Collection[int] = ()) -> tuple[list[CardRecord], dict[int, list[ObjectRecord]]]:
        """Every card, and the objects of the cards named, in one read transaction (so they agree)."""
        with self.snapshot() as db:
            cards = [_card(r) for r in db.execute(f"SELECT {_CARD_COLUMNS} FROM cards ORDER BY id")]  # noqa: S608 - constant columns
            objects = {c.id: self._objects(c.id) for c in cards if c.id in with_objects}
        return cards, objects

    def objects(self, card_id: int) -> list[ObjectRecord]:
        with self.lock:
            return self._objects(card_id)

    def _objects(self, card_id: int) -> list[ObjectRecord]:
        return [
            ObjectRecord(oid, card_id, bytes(uid), decode_attrs(attrs), secret)
            for oid, uid, attrs, secret in self._db.execute(
                "SELECT id, uid, attrs, secret FROM objects WHERE card_id = ? ORDER BY id", (card_id,)
            )
        ]

    def card(self, db: sqlite3.Connection, card_id: int) -> CardRecord | None:
        row = db.execute(f"SELECT {_CARD_COLUMNS} FROM cards WHERE id = ?", (card_id,)).fetchone()  # noqa: S608
        return _card(row) if row else None

    def card_serial(self, db: sqlite3.Connection, card_id: int) -> str | None:
        row = db.execute("SELECT serial FROM cards WHERE id = ?", (card_id,)).fetchone()
        return None if row is None else str(row[0])

    def insert_card(self, db: sqlite3.Connection, rec: CardRecord) -> int:
        cur = db.execute(
            "INSERT INTO cards(serial, label, created, policy, kdf, user_salt, user_wrapped, so_salt, so_wrapped,"
            " server, device_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.serial,
                rec.label,
                rec.created or time.time(),
                json.dumps(rec.policy),
                json.dumps(rec.kdf),
                rec.user_salt,
                rec.user_wrapped,
                rec.so_salt,
                rec.so_wrapped,
                json.dumps(rec.server) if rec.server else None,
                json.dumps(rec.device_key) if rec.device_key else None,
            ),
        )
        return int(cur.lastrowid or 0)

    def update_card(self, db: sqlite3.Connection, card_id: int, **fields: Any) -> None:
        if "server" in fields and fields["server"] is not None:
            fields["server"] = json.dumps(fields["server"])
        if "policy" in fields:
            fields["policy"] = json.dumps(fields["policy"])
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not card columns: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        db.execute(f"UPDATE cards SET {assignments} WHERE id = ?", (*fields.values(), card_id))  # noqa: S608 - names checked

    def delete_card(self, db: sqlite3.Connection, card_id: int) -> None:
        db.execute("DELETE FROM audit WHERE card_id = ?", (card_id,))
        db.execute("DELETE FROM audit_heads WHERE card_id = ?", (card_id,))
        db.execute("DELETE FROM objects WHERE card_id = ?", (card_id,))
        db.execute("DELETE FROM cards WHERE id = ?", (card_id,))

    def insert_object(
        self, db: sqlite3.Connection, card_id: int, uid: bytes, attrs: dict[int, bytes], secret: bytes | None
    ) -> int:
        cur = db.execute(
            "INSERT INTO objects(card_id, uid, attrs, secret) VALUES (?, ?, ?, ?)",
            (card_id, uid, encode_attrs(attrs), secret),
        )
        return int(cur.lastrowid or 0)

    def update_object(self, db: sqlite3.Connection, object_id: int, attrs: dict[int, bytes]) -> None:
        db.execute("UPDATE objects SET attrs = ? WHERE id = ?", (encode_attrs(attrs), object_id))

    def delete_object(self, db: sqlite3.Connection, object_id: int) -> bool:
        return db.execute("DELETE FROM objects WHERE id = ?", (object_id,)).rowcount > 0

    def object_attrs(self, db: sqlite3.Connection, object_id: int) -> dict[int, bytes] | None:
        """One object's attributes as committed (inside a write: what a read-modify-write starts from)."""
        row = db.execute("SELECT attrs FROM objects WHERE id = ?", (object_id,)).fetchone()
        return decode_attrs(row[0]) if row else None

    def card_object_attrs(self, db: sqlite3.Connection, card_id: int) -> list[dict[int, bytes]]:
        """The attributes of a card's token objects as committed (inside a write: what a check reads)."""
        rows = db.execute("SELECT attrs FROM objects WHERE card_id = ? ORDER BY id", (card_id,))
        return [decode_attrs(row[0]) for row in rows]

    def object_exists(self, db: sqlite3.Connection, object_id: int) -> bool:
        return db.execute("SELECT 1 FROM objects WHERE id = ?", (object_id,)).fetchone() is not None

    def delete_objects(self, db: sqlite3.Connection, card_id: int) -> None:
        """Every token object of a card (C_InitToken)."""
        db.execute("DELETE FROM objects WHERE card_id = ?", (card_id,))
