"""One process's writer of the audit log (token/audit.py has the chain, its reading and verifying).

A key use costs C_Sign one 16-byte write into this process's journal (token/audit_journal.py), a file mapped
in memory: once C_Sign returns, its entry survives the process being killed. The journal is folded into the
cards' chains (each entry hashed into the chain, the block stored, the head signed) when it is full (every
audit_journal.CAPACITY uses), at any PIN event (login, PIN change, block, unblock: written at once), at
C_Finalize, at the process's exit, by `vsc audit`, and by the next process that folds after this one ended.
Every fold takes every journal in the folder, in time order. The module starts no thread (NSS forbids it):
a fold runs in the call that triggers it.

Where no journal can be written (a read-only folder), key uses wait in memory and are written every
MEMORY_BATCH uses; a SIGKILL then loses at most MEMORY_BATCH - 1 of them.
"""

from __future__ import annotations

import atexit
import collections
import os
import sqlite3
import threading
import time
import weakref
from operator import itemgetter
from typing import Any, NamedTuple

from vsc_provider import log as vlog
from vsc_provider.ck.errors import CKRError, rv_name
from vsc_provider.token import audit, audit_journal, audit_store
from vsc_provider.token.audit import Who
from vsc_provider.token.audit_journal import CAPACITY, ENTRIES, SIZE, Description, Journal
from vsc_provider.token.store import Store

log = vlog.get("vsc.audit")
_time_ns = time.time_ns

MEMORY_BATCH = 128  # key uses kept in memory when there is no journal, at most
MAX_PENDING = 16 * MEMORY_BATCH  # while the store cannot be written, older entries beyond this are dropped
MAX_RETIRED = 16  # full journals not yet folded (the store cannot be written) before uses wait in memory
MAX_BLOCK = 4096  # entries stored in one block at most (a block counts them in 2 bytes)
IN_CALL_BUSY_MS = 200  # how long a fold inside C_Sign waits for the store's write lock
RETRY_S = 5.0  # after a journal could not be made, the wait before trying again


class Batch(NamedTuple):
    """Entries of one card to chain, as columns: each entry's description (a number into `texts`, each the
    encoded text fields of a key, mechanism, origin and result) and time (microseconds)."""

    card_id: int
    texts: list[bytes]
    described: list[int]
    times: list[int]


class _Tail(NamedTuple):
    """A card's serial, signed head and last entry (number, hash), as read or written in a transaction."""

    serial: str
    head: audit_store.Head | None
    last: tuple[int, bytes] | None


_LOGS: weakref.WeakSet[AuditLog] = weakref.WeakSet()
_Last = tuple[Who | None, int, int, Journal | None]  # the last use: who, result, description number, journal
_NO_LAST: _Last = (None, 0, 0, None)


def _after_fork_in_child() -> None:
    for log_ in list(_LOGS):
        log_.forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)


class AuditLog:
    """This process's writer of the store's audit log (one per engine)."""

    def __init__(self, store: Store, device_key: bytes) -> None:
        self.store = store
        self.device_key = device_key
        self.folder = audit_journal.folder_of(store.path)
        self.pending: collections.deque[tuple[int, Who, int]] = collections.deque()  # PIN events, or no journal
        self.lock = threading.Lock()
        self.store_pid = os.getpid()  # the process whose connection the store is: the only one that folds
        self.journal_pid = self.store_pid  # the process whose journal this log writes
        self._front_end = "token"
        self._program = ""
        self._journal: Journal | None = None
        self._retired: list[Journal] = []  # full journals, deleted once every slot is written and folded
        self._retry_at = 0.0  # after a journal could not be made, uses wait in memory until then
        self._spilled = False  # a journal's descriptions were full once (logged once)
        self._last: _Last = _NO_LAST
        self._described: dict[tuple[Who, str], bytes] = {}
        self._keys: dict[int, tuple[bytes, Any]] = {}  # card id -> (sealed key, unsealed key)
        self._dropped = 0
        self._unreadable: set[str] = set()
        self._tails: dict[int, _Tail] = {}  # card id -> what this process last wrote
        self._seen: tuple[int, int] | None = None  # the store's data_version and this connection's changes then
        _LOGS.add(self)
        atexit.register(_close_at_exit, weakref.ref(self))

    # --- who writes ------------------------------------------------------------------------------------

    @property
    def front_end(self) -> str:
        return self._front_end

    @front_end.setter
    def front_end(self, name: str) -> None:
        """Set by whoever starts the engine: pkcs11, cli, agent, piv, minidriver..."""
        self._front_end = name
        self._last = _NO_LAST  # the next use describes itself again, with the new origin

    @property
    def origin(self) -> str:
        if not self._program:
            self._program = audit.origin_of_process()
        return f"{self._front_end}/{self._program}"

    def forget_parent(self) -> None:
        """In a forked child: what the parent buffered and its journal stay the parent's. The child writes a
        journal of its own but never folds: the store's connection is the parent's (SQLite connections must
        not cross a fork), so the next process folds the child's journal once the child has ended."""
        self.journal_pid = os.getpid()
        self.pending.clear()
        self._program = ""
        self._last = _NO_LAST
        for journal in (self._journal, *self._retired):
            if journal is not None:
                journal.forget()
        self._journal = None
        self._retired = []
        if self.lock.locked():  # another thread of the parent was folding: this child starts afresh
            self.lock = threading.Lock()

    # --- recording -------------------------------------------------------------------------------------

    def use(self, who: Who, rv: int) -> None:
        """A key use. The hot path (the same key, mechanism and result as the last use): one journal slot.
        Never raises: the key was used, and its C_Sign must not fail for the record."""
        last = self._last
        if who is last[0] and rv == last[1]:
            journal = last[3]
            assert journal is not None
            offset = ENTRIES + (next(journal.slots) << 4)
            if offset < SIZE:
                try:
                    journal.put(journal.map, offset + 2, last[2], _time_ns())
                    journal.map[offset] = 1
                    return
                except (ValueError, TypeError):  # closed meanwhile by another thread (C_Finalize, exit)
                    pass
        self._use(who, rv)

    def _use(self, who: Who, rv: int) -> None:
        now = _time_ns()
        try:
            self._use_locked(who, rv, now)
        except Exception:  # kept in memory instead
            log.exception("cannot write an audit entry to the journal")
            self.pending.append((now, who, rv))

    def _use_locked(self, who: Who, rv: int, now: int) -> None:
        with self.lock:
            for attempt in range(2):
                journal = self._current()
                if journal is None:
                    break
                described = Description(
                    who.card_id, who.kind, who.key_id, who.key_label, who.mechanism, rv, self.origin
                )
                index = journal.describe(described)
                if index is None:  # its descriptions fill their space: this use waits in memory
                    if not self._spilled:
                        self._spilled = True
                        log.warning("the audit journal has no room for more kinds of key use: some wait in memory")
                    break
                if journal.add(index, now):
                    self._last = (who, rv, index, journal)
                    return
                # Full: retired, folded, and another journal started.
                self._retired.append(journal)
                self._journal = None
                self._last = _NO_LAST
                if attempt == 0:
                    self._flush_locked(look_first=False, busy_ms=IN_CALL_BUSY_MS)
            self.pending.append((now, who, rv))
            if len(self.pending) >= MEMORY_BATCH:
                self._flush_locked()

    def _current(self) -> Journal | None:
        """This process's journal, made at its first use; None when uses must wait in memory."""
        if self._journal is not None:
            return self._journal
        if os.getpid() != self.journal_pid or len(self._retired) >= MAX_RETIRED:
            return None
        if time.monotonic() < self._retry_at:
            return None
        try:
            self._journal = Journal(self.folder)
        except OSError as exc:  # tried again after RETRY_S (the folder may come back, or descriptors free up)
            self._retry_at = time.monotonic() + RETRY_S
            log.warning("cannot write an audit journal in %s (%s): key uses wait in memory", self.folder, exc)
        return self._journal

    def event(self, card_id: int, kind: str, rv: int = 0) -> None:
        """A PIN event (login, PIN change, block, unblock): written at once with everything that waits."""
        self.pending.append((_time_ns(), Who(card_id, kind, "", "", None), rv))
        self.flush()

    # --- folding ---------------------------------------------------------------------------------------

    def chain(self, card_id: int) -> tuple[list[audit_store.Entry], audit_store.Head | None]:
        """The card's chain and signed head as stored (this process's own key uses are there once flushed)."""
        return audit.entries(self.store, card_id)

    def flush(self, wait: bool = True) -> None:
        """Fold every journal and what waits in memory into the chains. Never raises: a failed write keeps
        the entries (journals stay on disk; memory up to MAX_PENDING) for the next one. The caller must not
        hold the store's lock (a fold in another thread holds this log's lock first)."""
        if os.getpid() != self.store_pid:  # a forked child: no folding through the parent's connection
            if os.getpid() != self.journal_pid:
                self.forget_parent()
            self.pending.clear()
            return
        if not self.lock.acquire(blocking=wait):
            return
        try:
            self._flush_locked()
        except Exception:
            log.exception("cannot fold the audit journals")
        finally:
            self.lock.release()

    def close(self) -> None:
        """Fold, then delete this process's journals whose every taken slot is folded (at C_Finalize and at
        exit); a journal with anything left stays for the next process to fold."""
        with self.lock:
            journals = [j for j in (self._journal, *self._retired) if j is not None]
            self._journal = None
            self._retired = []
            self._last = _NO_LAST
            folded: dict[str, int] = {}
            if os.getpid() == self.store_pid:
                try:
                    self._flush_locked()
                    if journals:
                        with self.store.reading() as db:
                            folded = {j.name: audit_journal.folded(db, j.name) for j in journals}
                except Exception:
                    log.exception("cannot fold the audit journals")
            for journal in journals:
                taken = min(journal.taken(), CAPACITY)  # later takers find the mapping closed
                done = folded.get(journal.name, ENTRIES) >= ENTRIES + 16 * taken
                journal.close(delete=done)

    def _unfolded(self) -> bool:
        """Whether any journal holds entries not folded yet, or an ended one to delete (read without taking
        the store's write lock). True when it cannot tell: the fold then tries, and says why it fails."""
        try:
            with self.store.reading() as db:
                for found in audit_journal.journals(self.folder):
                    ended = found.ended_fd is not None
                    if ended:
                        os.close(found.ended_fd)  # type: ignore[arg-type]
                    try:
                        columns = audit_journal.parse(found.data, audit_journal.folded(db, found.name), ended=ended)
                    except audit_journal.Unreadable:
                        continue
                    if columns.times or ended:
                        return True
            return False
        except (OSError, sqlite3.Error, CKRError):
            return True

    def _flush_locked(self, look_first: bool = True, busy_ms: int | None = None) -> None:
        """Fold; with LOOK_FIRST, only when something waits (no write transaction for nothing: the store
        may be read-only). A full journal does not look first (it has CAPACITY entries to fold) and waits
        for the store's write lock at most BUSY_MS: its entries are safe in the journal meanwhile."""
        if look_first and not self.pending and not self._unfolded():
            return
        popleft = self.pending.popleft
        waiting = [popleft() for _ in range(len(self.pending))]  # one by one: threads may append meanwhile
        ended: list[tuple[str, int]] = []
        try:
            try:
                with self.store.audit_transaction(busy_ms) as db:
                    ends, tails = self._fold(db, waiting, ended)
            except (sqlite3.Error, OSError, CKRError) as exc:
                self._tails.clear()  # what the failed transaction wrote was rolled back
                self._seen = None
                log.warning("cannot write the audit log yet: %s", exc)
                self.pending.extendleft(reversed(waiting))
                while len(self.pending) > MAX_PENDING:
                    self.pending.popleft()
                    self._dropped += 1
                if self._dropped:
                    log.error("%d audit entries dropped: the store could not be written", self._dropped)
                return
            self._tails.update(tails[0])
            self._seen = tails[1]
            for name, _ in ended:  # their processes have ended and everything they wrote is folded
                _unlink(os.path.join(self.folder, name))
        finally:
            for _, fd in ended:
                os.close(fd)
        keep = []
        for journal in self._retired:
            if ends.get(journal.name) == SIZE:  # every slot written and folded
                journal.close(delete=True)
            else:
                keep.append(journal)
        self._retired = keep

    def _fold(
        self, db: sqlite3.Connection, waiting: list[tuple[int, Who, int]], ended: list[tuple[str, int]]
    ) -> tuple[dict[str, int], tuple[dict[int, _Tail], tuple[int, int] | None]]:
        """Inside the write transaction: every journal's new entries, then WAITING, chained. Returns each
        journal's folded offset, and the cards' new tails with the store's state after them (to keep once the
        transaction has committed); ENDED gets the journals of ended processes (name, locked descriptor)."""
        batches: list[tuple[int, list[Batch]]] = []  # (first time, batches) per journal
        ends: dict[str, int] = {}
        for found in audit_journal.journals(self.folder):
            if found.ended_fd is not None:
                ended.append((found.name, found.ended_fd))
            start = audit_journal.folded(db, found.name)
            try:
                columns = audit_journal.parse(found.data, start, ended=found.ended_fd is not None)
            except audit_journal.Unreadable as exc:
                if found.name not in self._unreadable:
                    self._unreadable.add(found.name)
                    log.error("audit journal %s left out: %s", found.name, exc)
                if ended and ended[-1][0] == found.name:
                    os.close(ended.pop()[1])  # kept on disk for whoever looks into it
                continue
            ends[found.name] = columns.end
            if columns.times:
                batches.append((columns.times[0], _journal_batches(columns)))
                audit_store.set_journal_offset(db, found.name, columns.end)
        batches.sort(key=itemgetter(0))  # journals in the order of their first new entry
        if waiting:
            batches.append((0, self._memory_batches(waiting)))
        audit_journal.forget_deleted(db, self.folder)
        tails = self._write(db, [batch for _, of_source in batches for batch in of_source])
        return ends, tails

    def _memory_batches(self, waiting: list[tuple[int, Who, int]]) -> list[Batch]:
        origin = self.origin
        by_card: dict[int, tuple[Batch, dict[tuple[Who, int], int]]] = {}
        for at, who, rv in waiting:
            batch, numbers = by_card.get(who.card_id) or by_card.setdefault(
                who.card_id, (Batch(who.card_id, [], [], []), {})
            )
            number = numbers.get((who, rv))
            if number is None:
                number = numbers[who, rv] = len(batch.texts)
                batch.texts.append(self._describe(who, origin) + audit.encode_text(rv_name(rv)))
            batch.described.append(number)
            batch.times.append(at // 1000)
        return [batch for batch, _ in by_card.values()]

    def _write(self, db: sqlite3.Connection, batches: list[Batch]) -> tuple[dict[int, _Tail], tuple[int, int] | None]:
        """Append BATCHES to their cards' chains. Returns the cards' new tails and the store's state after
        them, which the caller keeps once the transaction has committed (not before: a failed COMMIT rolls
        them back, and a retry must read the chain's end again)."""
        if not batches:
            return {}, self._seen
        # What this process read and wrote last time still holds when no other connection committed since
        # (data_version) and this one changed nothing else (total_changes): then the card's serial, head and
        # last entry need no reading.
        seen = (audit_store.data_version(db), db.total_changes)
        known = self._tails if seen == self._seen else {}
        tails: dict[int, _Tail] = {}
        for batch in batches:
            card_id = batch.card_id
            tail = tails.get(card_id) or known.get(card_id)
            if tail is None:
                serial = self.store.card_serial(db, card_id)
                if serial is None:  # a deleted card's entries go with it
                    continue
                tail = _Tail(serial, audit_store.head(db, card_id), audit_store.last(db, card_id))
            for start in range(0, len(batch.times), MAX_BLOCK):
                part = slice(start, start + MAX_BLOCK)
                tail = self._append(db, card_id, tail, batch.texts, batch.described[part], batch.times[part])
            tails[card_id] = tail
        if known is not self._tails:
            self._tails.clear()
        return tails, (seen[0], db.total_changes)

    def _append(
        self,
        db: sqlite3.Connection,
        card_id: int,
        tail: _Tail,
        texts: list[bytes],
        described: list[int],
        times: list[int],
    ) -> _Tail:
        """Continue the chain from what is stored now (another process may have written since), and sign the
        new head only when the stored chain ends at the signed head (a chain whose end was cut or rolled back
        stays unsigned, so `verify` keeps reporting it). Returns the new tail."""
        serial, head, last = tail
        if head is None and last is None:
            key, sealed = audit.new_key(self.device_key, serial)
            self._keys[card_id] = (sealed, key)
        elif head is not None and last is not None and head.seq == last[0] and head.hash == last[1]:
            key = self._key(card_id, serial, head.sealed_key)
            sealed = head.sealed_key
        else:
            key = sealed = None
            log.error("the audit log of card %s does not end at its signed head: entries stay unsigned", serial)
        seq, prev = (0, audit.genesis(serial)) if last is None else last
        if head is not None and head.seq > seq:  # entries after the signed head were removed: leave the gap
            seq, prev = head.seq, head.hash
        first = seq + 1
        block, seq, prev = audit.chain_block(seq, prev, texts, described, times)
        audit_store.insert(db, card_id, first, seq, block)
        if key is not None and sealed is not None:
            signature = key.sign(audit.head_message(serial, seq, prev))
            head = audit_store.Head(seq, prev, signature, sealed)
            audit_store.set_head(db, card_id, head)
        return _Tail(serial, head, (seq, prev))

    def _describe(self, who: Who, origin: str) -> bytes:
        """encode_text of the fields a use shares with every use of its key and mechanism (not the result)."""
        found = self._described.get((who, origin))
        if found is None:
            found = audit.encode_text(who.kind, who.key_id, who.key_label, audit.mechanism_name(who.mechanism), origin)
            if len(self._described) > 1024:
                self._described.clear()
            self._described[who, origin] = found
        return found

    def _key(self, card_id: int, serial: str, sealed: bytes) -> Any:
        cached = self._keys.get(card_id)
        if cached is not None and cached[0] == sealed:
            return cached[1]
        key = audit.unseal_key(self.device_key, serial, sealed)
        if key is None:
            log.error("the audit key of card %s was not sealed on this device: entries stay unsigned", serial)
            return None
        self._keys[card_id] = (sealed, key)
        return key


def _journal_batches(columns: audit_journal.Columns) -> list[Batch]:
    """A journal's new entries as one batch per card (one, nearly always)."""
    texts = [
        audit.encode_text(d.kind, d.key_id, d.key_label, audit.mechanism_name(d.mechanism), d.origin, rv_name(d.rv))
        for d in columns.descriptions
    ]
    times = [at // 1000 for at in columns.times]
    cards = [d.card_id for d in columns.descriptions]
    if len(set(cards)) == 1:
        return [Batch(cards[0], texts, columns.described, times)]
    batches = []
    for card_id in dict.fromkeys(cards):
        mine = [i for i, d in enumerate(columns.described) if cards[d] == card_id]
        batches.append(Batch(card_id, texts, [columns.described[i] for i in mine], [times[i] for i in mine]))
    return batches


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # folded all the same; a later fold tries again (its offsets say nothing is left)
        log.warning("cannot delete the folded audit journal %s: %s", path, exc)


def _close_at_exit(ref: weakref.ref[AuditLog]) -> None:
    log_ = ref()
    if log_ is not None:
        try:
            log_.close()
        except Exception:  # at exit, never a traceback: what was not folded stays in the journal
            log.exception("cannot fold the audit journal at exit")
