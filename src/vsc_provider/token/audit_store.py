"""The audit log's SQL and its stored form (the tables are in token/store.py's schema): the chains' blocks and
signed heads, and how far each journal (token/audit_journal.py) was folded.

Each write stores its batch of a card's entries as one row of `audit`: (card_id, first_seq, last_seq, block),
the block packed here. SQLite inserts one row of a few kilobytes several times faster than 128 rows of eleven
columns, which was most of what a batch write cost. A block (integers big-endian) is:

    version (1 byte, 1), number of descriptions (2 bytes), number of entries n (2 bytes)
    each description: its six text fields (kind, key id, key label, mechanism, origin, result), each as its
        UTF-8 length (4 bytes) then its bytes
    number of stored prevs (2 bytes), each as its entry's position in the block (2 bytes) and the hash (32)
    the entries by column: n numbers (8 bytes each), n times (8 bytes each), n description positions
        (2 bytes each), n hashes (32 bytes each)

The text an entry shares with other entries of its batch is stored once. Every entry carries its own number,
time, hash and previous hash: the previous hash is stored when it is not the hash of the entry stored before
it in the block (always for the first one), so a block written in order stores one, and an entry moved or
dropped by hand keeps the prev it had. The last entry's hash is the block's last 32 bytes.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from typing import NamedTuple


class Entry(NamedTuple):
    """One audit entry: what happened, never data, digests of data or PINs."""

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


VERSION = 1
Texts = tuple[str, str, str, str, str, str]  # kind, key id, key label, mechanism, origin, result
_HEADER = struct.Struct(">BHH")
_U16 = struct.Struct(">H")
_LENGTH = struct.Struct(">I")
_PREV = struct.Struct(">H32s")
_COLUMNS = 8 + 8 + 2 + 32  # bytes per entry in the columns


def encode_texts(texts: Sequence[str]) -> bytes:
    """Text fields, each as its UTF-8 length (4 bytes, big-endian) then its bytes: one reading only."""
    out = []
    for text in texts:
        raw = text.encode()
        out.append(_LENGTH.pack(len(raw)))
        out.append(raw)
    return b"".join(out)


def read_texts(buf: bytes, offset: int, count: int) -> tuple[list[str], int]:
    """COUNT text fields as encode_texts wrote them, from OFFSET; and the offset after them. ValueError (or
    struct.error, UnicodeDecodeError) when they run past BUF's end or are not UTF-8."""
    out = []
    for _ in range(count):
        (size,) = _LENGTH.unpack_from(buf, offset)
        offset += _LENGTH.size
        if offset + size > len(buf):
            raise ValueError("a text field runs past its end")
        out.append(buf[offset : offset + size].decode())
        offset += size
    return out, offset


def decode_texts(raw: bytes, count: int) -> list[str]:
    """COUNT text fields as encode_texts wrote them, filling RAW exactly; ValueError otherwise."""
    out, end = read_texts(raw, 0, count)
    if end != len(raw):
        raise ValueError("bytes after the text fields")
    return out


def pack_block(
    descriptions: Sequence[bytes],
    prevs: dict[int, bytes],
    seqs: Sequence[int],
    times: Sequence[int],
    described: Sequence[int],
    hashes: Sequence[bytes],
) -> bytes:
    """A block: its descriptions (each encode_texts of six fields), the prevs that are not the hash of the
    entry before (by position), and the entries' columns."""
    n = len(seqs)
    return b"".join(
        (
            _HEADER.pack(VERSION, len(descriptions), n),
            *descriptions,
            _U16.pack(len(prevs)),
            *(_PREV.pack(i, prev) for i, prev in sorted(prevs.items())),
            struct.pack(f">{n}Q{n}Q{n}H", *seqs, *times, *described),
            *hashes,
        )
    )


def block_of(entries: Sequence[Entry]) -> bytes:
    """The block that stores these entries (in this order)."""
    texts: dict[Texts, int] = {}
    for e in entries:
        texts.setdefault((e.kind, e.key_id, e.key_label, e.mechanism, e.origin, e.result), len(texts))
    prevs = {i: e.prev for i, e in enumerate(entries) if i == 0 or e.prev != entries[i - 1].hash}
    return pack_block(
        [encode_texts(t) for t in texts],
        prevs,
        [e.seq for e in entries],
        [e.time for e in entries],
        [texts[e.kind, e.key_id, e.key_label, e.mechanism, e.origin, e.result] for e in entries],
        [e.hash for e in entries],
    )


class BadBlock(ValueError):
    """A block that cannot be read (changed by hand, or cut)."""


def unpack_block(block: bytes) -> list[Entry]:
    """The entries of a block, in stored order; BadBlock when it is not a well-formed block."""
    try:
        version, count, n = _HEADER.unpack_from(block, 0)
        if version != VERSION:
            raise BadBlock(f"unknown block version {version}")
        offset = _HEADER.size
        texts: list[Texts] = []
        for _ in range(count):
            fields, offset = read_texts(block, offset, 6)
            texts.append((fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]))
        (stored,) = _U16.unpack_from(block, offset)
        offset += _U16.size
        prevs = dict(_PREV.iter_unpack(block[offset : offset + stored * _PREV.size]))
        offset += stored * _PREV.size
        if len(block) - offset != n * _COLUMNS:
            raise BadBlock("the entries do not fill the block")
        numbers = struct.unpack_from(f">{n}Q{n}Q{n}H", block, offset)
        offset += n * 18
        hashes = [block[offset + 32 * i : offset + 32 * (i + 1)] for i in range(n)]
        out = []
        for i in range(n):
            prev = prevs[i] if i in prevs else hashes[i - 1] if i else b""
            kind, key_id, label, mechanism, origin, result = texts[numbers[2 * n + i]]
            out.append(
                Entry(numbers[i], numbers[n + i], kind, key_id, label, mechanism, origin, result, prev, hashes[i])
            )
        return out
    except BadBlock:
        raise
    except (struct.error, UnicodeDecodeError, IndexError, ValueError) as exc:
        raise BadBlock(str(exc)) from None


def _unreadable(first_seq: int) -> Entry:
    """What stands for a block that cannot be read: an entry that verifies as broken at its first number."""
    return Entry(first_seq, 0, "", "", "", "", "", "(unreadable)", b"", b"")


def entries(db: sqlite3.Connection, card_id: int) -> list[Entry]:
    out: list[Entry] = []
    for first_seq, block in db.execute(
        "SELECT first_seq, block FROM audit WHERE card_id = ? ORDER BY first_seq", (card_id,)
    ):
        try:
            out.extend(unpack_block(bytes(block)))
        except BadBlock:
            out.append(_unreadable(first_seq))
    return out


def head(db: sqlite3.Connection, card_id: int) -> Head | None:
    row = db.execute(
        "SELECT seq, hash, signature, sealed_key FROM audit_heads WHERE card_id = ?", (card_id,)
    ).fetchone()
    return None if row is None else Head(row[0], bytes(row[1]), bytes(row[2]), bytes(row[3]))


def last(db: sqlite3.Connection, card_id: int) -> tuple[int, bytes] | None:
    """The number and hash of the last stored entry (the last one of the last block). A block that does not
    hold one gives its last_seq and an empty hash: a writer then starts a chain that does not verify."""
    row = db.execute(
        "SELECT last_seq, block FROM audit WHERE card_id = ? ORDER BY first_seq DESC LIMIT 1", (card_id,)
    ).fetchone()
    if row is None:
        return None
    block = bytes(row[1])
    n = _HEADER.unpack_from(block, 0)[2] if len(block) >= _HEADER.size else 0
    start = len(block) - n * _COLUMNS
    if n == 0 or start < _HEADER.size:
        return row[0], b""
    (seq,) = struct.unpack_from(">Q", block, start + 8 * (n - 1))
    return seq, block[-32:]


def insert(db: sqlite3.Connection, card_id: int, first_seq: int, last_seq: int, block: bytes) -> None:
    db.execute(
        "INSERT INTO audit(card_id, first_seq, last_seq, block) VALUES (?, ?, ?, ?)",
        (card_id, first_seq, last_seq, block),
    )


def set_head(db: sqlite3.Connection, card_id: int, new: Head) -> None:
    db.execute(
        "INSERT OR REPLACE INTO audit_heads(card_id, seq, hash, signature, sealed_key) VALUES (?, ?, ?, ?, ?)",
        (card_id, *new),
    )


# --- how far each journal was folded (table audit_journals) -------------------------------------------


def journal_offset(db: sqlite3.Connection, name: str) -> int | None:
    """The offset up to which journal NAME was folded; None when it never was."""
    row = db.execute("SELECT folded FROM audit_journals WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def set_journal_offset(db: sqlite3.Connection, name: str, offset: int) -> None:
    """Inside the fold's write transaction, with the entries it chained: each entry is folded exactly once."""
    db.execute("INSERT OR REPLACE INTO audit_journals(name, folded) VALUES (?, ?)", (name, offset))


def journal_names(db: sqlite3.Connection) -> list[str]:
    return [name for (name,) in db.execute("SELECT name FROM audit_journals").fetchall()]


def forget_journal(db: sqlite3.Connection, name: str) -> None:
    db.execute("DELETE FROM audit_journals WHERE name = ?", (name,))


def data_version(db: sqlite3.Connection) -> int:
    """Changes when another connection commits (inside a transaction: as of its start)."""
    return int(db.execute("PRAGMA data_version").fetchone()[0])
