"""The audit log's SQL: a card's entries and its signed head (the tables are in token/store.py's schema)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple


class Entry(NamedTuple):
    """One audit entry as stored: what happened, never data, digests of data or PINs."""

    seq: int
    time: int  # microseconds since the Unix epoch
    kind: str  # sign, decrypt, derive, unwrap, otp-code, login-user, pin-change-so, block-user, ...
    key_id: str  # hex CKA_ID of the key used ('' for PIN events)
    key_label: str
    mechanism: str  # CKM_ name ('' for PIN events)
    origin: str  # front end, program and process id
    result: str  # CKR_OK or the refusal's CKR_ name
    prev: bytes  # the previous entry's hash (the card's genesis value for the first)
    hash: bytes


class Head(NamedTuple):
    """The last entry's number and hash, signed by the card's audit key (sealed under the device key)."""

    seq: int
    hash: bytes
    signature: bytes
    sealed_key: bytes


_COLUMNS = "seq, time, kind, key_id, key_label, mechanism, origin, result, prev, hash"


def entries(db: sqlite3.Connection, card_id: int) -> list[Entry]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM audit WHERE card_id = ? ORDER BY seq", (card_id,))  # noqa: S608
    return [
        Entry(seq, time, kind, key_id, label, mech, origin, result, bytes(prev), bytes(digest))
        for seq, time, kind, key_id, label, mech, origin, result, prev, digest in rows
    ]


def head(db: sqlite3.Connection, card_id: int) -> Head | None:
    row = db.execute(
        "SELECT seq, hash, signature, sealed_key FROM audit_heads WHERE card_id = ?", (card_id,)
    ).fetchone()
    return None if row is None else Head(row[0], bytes(row[1]), bytes(row[2]), bytes(row[3]))


def last(db: sqlite3.Connection, card_id: int) -> tuple[int, bytes] | None:
    """The highest-numbered entry's number and hash."""
    row = db.execute("SELECT seq, hash FROM audit WHERE card_id = ? ORDER BY seq DESC LIMIT 1", (card_id,)).fetchone()
    return None if row is None else (row[0], bytes(row[1]))


def hash_at(db: sqlite3.Connection, card_id: int, seq: int) -> bytes | None:
    row = db.execute("SELECT hash FROM audit WHERE card_id = ? AND seq = ?", (card_id, seq)).fetchone()
    return None if row is None else bytes(row[0])


def insert(db: sqlite3.Connection, card_id: int, new: Sequence[tuple[object, ...]]) -> None:
    """New entries, each as the fields of an Entry in order."""
    db.executemany(
        f"INSERT INTO audit(card_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        [(card_id, *e) for e in new],
    )


def set_head(db: sqlite3.Connection, card_id: int, new: Head) -> None:
    db.execute(
        "INSERT OR REPLACE INTO audit_heads(card_id, seq, hash, signature, sealed_key) VALUES (?, ?, ?, ?, ?)",
        (card_id, *new),
    )
