"""The audit journal: a process's key uses, each written at once into a file it maps in memory, so that a
process killed by SIGKILL loses none of them; token/audit.py folds them into the cards' hash chains in bulk.

A journal is a file of SIZE bytes in the store's journal folder (the store's path + "-audit", 0700; the file
0600), named after its process and a random part, and locked (flock) by that process for as long as it lives.
Integers are in the machine's byte order (a journal never leaves its machine), so that a fold reads a
journal's columns without a loop in Python. It holds:

    a header (16 bytes): MAGIC, then 8 bytes of zeros
    descriptions, from offset 16 to ENTRIES: what entries share (card, key, mechanism, result, program), each
        as a mark byte, the card id (4 bytes), the mechanism (8 bytes, NO_MECHANISM for none), the result
        (the CKR_ value, 4 bytes), the length of the texts (2 bytes) and the texts (kind, key id, key label,
        origin: encode_texts)
    entries, from ENTRIES to SIZE, 16 bytes each: a mark byte, a zero byte, the description's number
        (2 bytes), 4 zero bytes and the time (nanoseconds since the epoch, 8 bytes)

A record's mark byte (1) is written after the rest of it, so a reader stops at the first record whose mark is
still 0: a process killed in the middle of a write leaves out only the record it was writing. Entry slots are
taken with an atomic counter, so threads never share one.

Whoever folds a journal reads the entries after the offset the store records for it (token/audit_store.py),
chains them and records the new offset in the same transaction: each entry is folded exactly once, by
whichever process folds first, and a fold that dies takes nothing with it. Any process may fold any journal;
only a journal whose lock is free (its process has ended) is deleted, once folded.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import mmap
import os
import secrets
import sqlite3
import stat
import struct
from collections.abc import Iterator
from typing import NamedTuple

from vsc_provider.token import audit_store

MAGIC = b"vscaudj\x01"
HEADER = 16
ENTRIES = 32768  # where the entries start (the descriptions take what is before)
MAX_TEXT = 256  # characters of a key id, label or origin kept in a description (a longer label is cut)
CAPACITY = 4096  # entries per journal: a full journal is folded and replaced
SIZE = ENTRIES + 16 * CAPACITY
SUFFIX = ".journal"
NO_MECHANISM = (1 << 64) - 1

ENTRY_BODY = struct.Struct("=H4xQ")  # an entry without its mark and zero byte, written at the slot + 2
_DESCRIPTION = struct.Struct("=BIQIH")


class Description(NamedTuple):
    """What a journal's entries share: the Who of token/audit.py, the result and the process."""

    card_id: int
    kind: str
    key_id: str
    key_label: str
    mechanism: int | None
    rv: int
    origin: str


class Columns(NamedTuple):
    """A journal's descriptions, and its entries from a given offset as columns, up to the first unwritten
    slot (`end`)."""

    descriptions: list[Description]
    described: list[int]  # each entry's description number
    times: list[int]  # each entry's time, nanoseconds since the epoch
    end: int


class Unreadable(ValueError):
    """A file in the journal folder that is not a journal this version writes."""


def folder_of(store_path: str) -> str:
    return store_path + "-audit"


class Journal:
    """This process's journal: it writes entries; folding is token/audit_writer.py's."""

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self.name = f"{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
        self.path = os.path.join(folder, self.name)
        # Made under a name no fold looks at, locked, its blocks allocated (so a full disk is an error here,
        # not a SIGBUS at a write into the mapping) and its header written; then renamed into view.
        making = os.path.join(folder, f".{self.name}.new")
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, SIZE)
            self.map = mmap.mmap(fd, SIZE)
            self.map[:HEADER] = MAGIC + bytes(HEADER - len(MAGIC))
            os.rename(making, self.path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(making)
            except OSError:
                pass
            raise
        self.fd = fd
        self.slots = itertools.count()  # next() is atomic under the GIL: one slot per entry, whatever the thread
        self.put = ENTRY_BODY.pack_into
        self.descriptions: dict[Description, int] = {}
        self._described_end = HEADER

    def taken(self) -> int:
        """The number of slots taken so far (this takes one more, past the others: call it when retiring)."""
        return next(self.slots)

    def add(self, description: int, at_ns: int) -> bool:
        """Write one entry (False when the journal is full)."""
        offset = ENTRIES + (next(self.slots) << 4)
        if offset >= SIZE:
            return False
        self.put(self.map, offset + 2, description, at_ns)
        self.map[offset] = 1
        return True

    def describe(self, d: Description) -> int | None:
        """The number of this description in the journal, written on first use; None when there is no room.
        The caller holds the audit log's lock (descriptions are written by one thread at a time)."""
        found = self.descriptions.get(d)
        if found is not None:
            return found
        texts = audit_store.encode_texts((d.kind, d.key_id[:MAX_TEXT], d.key_label[:MAX_TEXT], d.origin[:MAX_TEXT]))
        at = self._described_end
        end = at + _DESCRIPTION.size + len(texts)
        if end > ENTRIES or len(self.descriptions) > 0xFFFF or len(texts) > 0xFFFF:
            return None
        mechanism = NO_MECHANISM if d.mechanism is None else d.mechanism
        head = _DESCRIPTION.pack(0, d.card_id, mechanism, d.rv & 0xFFFFFFFF, len(texts))
        self.map[at + 1 : end] = head[1:] + texts
        self.map[at] = 1
        self._described_end = end
        index = self.descriptions[d] = len(self.descriptions)
        return index

    def close(self, delete: bool) -> None:
        """Unmap and unlock; delete the file when everything in it was folded."""
        if delete:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        try:
            self.map.close()
        except BufferError:  # a reader still holds a view: the mapping goes with it
            pass
        os.close(self.fd)

    def forget(self) -> None:
        """In a forked child: the parent's journal is the parent's (close the inherited lock's descriptor)."""
        try:
            os.close(self.fd)
        except OSError:
            pass


# --- reading (any process) ----------------------------------------------------------------------------


def parse(data: bytes, start: int, ended: bool = False) -> Columns:
    """A journal's descriptions and its entries from offset START; Unreadable when DATA is not a journal.
    Entries are read up to the first slot not written yet; for the journal of a process that has ENDED, every
    written slot (a thread killed before it marked its slot leaves a hole that no one will fill)."""
    if len(data) != SIZE or data[: len(MAGIC)] != MAGIC:
        raise Unreadable("not an audit journal")
    descriptions: list[Description] = []
    at = HEADER
    try:
        while at < ENTRIES and data[at] == 1:
            _, card_id, mechanism, rv, length = _DESCRIPTION.unpack_from(data, at)
            at += _DESCRIPTION.size
            kind, key_id, key_label, origin = audit_store.decode_texts(data[at : at + length], 4)
            mech = None if mechanism == NO_MECHANISM else mechanism
            descriptions.append(Description(card_id, kind, key_id, key_label, mech, rv, origin))
            at += length
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise Unreadable(f"a description cannot be read: {exc}") from None
    if start < ENTRIES or start > SIZE or (start - ENTRIES) % 16:
        raise Unreadable("the folded offset is not at an entry")
    marks = data[start:SIZE:16]
    count = len(marks) - len(marks.lstrip(b"\x01"))  # written slots, up to the first that is not
    end = SIZE if ended else start + 16 * count
    view = memoryview(data)[start:end]
    described = view.cast("H")[1::8].tolist()
    times = view.cast("Q")[1::2].tolist()
    if ended and count < len(marks):
        written = [i for i, mark in enumerate(marks) if mark == 1]
        described = [described[i] for i in written]
        times = [times[i] for i in written]
    if described and max(described) >= len(descriptions):
        raise Unreadable("an entry names a description the journal does not have")
    return Columns(descriptions, described, times, end)


class Found(NamedTuple):
    """A journal file of the folder: its name, contents, and its lock when its process has ended (fd)."""

    name: str
    data: bytes
    ended_fd: int | None


def journals(folder: str) -> Iterator[Found]:
    """The folder's journals, each read in full; a journal whose process has ended comes with its locked
    descriptor, which the caller closes (after deleting the file). What is not a regular file of SIZE bytes
    (a FIFO, a folder, a link, a file cut short) comes as empty data: Unreadable, never opened for long."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX))
    except OSError:  # no folder (no journal yet), or not one this process can read
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # deleted meanwhile by another process, or a link
        ended: int | None = None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != SIZE:
                yield Found(name, b"", None)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_nlink == 0:  # another process folded and deleted it before our lock
                    continue
                ended = fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            data = os.pread(fd, SIZE + 1, 0)
        except OSError:
            data = b""  # cannot be read: left out as Unreadable
        finally:
            if ended is None:
                os.close(fd)
        yield Found(name, data, ended)


# --- the store's record of what was folded ------------------------------------------------------------


def folded(db: sqlite3.Connection, name: str) -> int:
    """Where the fold of journal NAME starts: after what was folded, or at its first entry."""
    offset = audit_store.journal_offset(db, name)
    return ENTRIES if offset is None else offset


def forget_deleted(db: sqlite3.Connection, folder: str) -> None:
    """Drop the records of journals that no longer exist (deleted once folded)."""
    for name in audit_store.journal_names(db):
        if not os.path.exists(os.path.join(folder, name)):
            audit_store.forget_journal(db, name)
