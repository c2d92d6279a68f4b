"""The audit log: every use of a card key, login, PIN change, block and unblock, kept in the store as a
hash chain per card (each entry carries the previous entry's hash), its head signed by the card's audit key.
Entries name the key, mechanism, front end and result, never data, digests of data or PINs.

Key uses are buffered in memory and written in batches, so C_Sign pays a list append: a batch is written when
BATCH entries wait, at the first entry more than MAX_AGE after the last write, at C_Finalize and at the
process's exit. PIN events are written at once. A write stores the batch as one row (a packed block,
token/audit_store.py), so what a signature costs there is mostly its SHA-256 link in the chain. A process
killed by SIGKILL (or a host that exits without C_Finalize) loses at most BATCH - 1 key-use entries, never a
PIN event. The module starts no thread (NSS forbids it): the write happens in the call that fills the batch.

The audit key is an Ed25519 key per card, sealed under the device key only (not the PIN), so that any process
on this device can sign the head after its writes, logged in or not. It proves that the signed entries were
written on this device and not changed, removed or reordered since, to anyone who can read the store but not
the device key (a stolen or copied store, a backup, another user's process with write access to the file).
It does not protect against the user's own account: whoever can read the device key can re-seal a forged
chain. Deleting a whole card's log (entries and head) shows only as a log that starts again at 1.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import os
import sqlite3
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from vsc_provider import log as vlog
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError, rv_name
from vsc_provider.token import audit_store
from vsc_provider.token.audit_store import Entry, Head
from vsc_provider.token.store import Store

log = vlog.get("vsc.audit")
_time_ns = time.time_ns
_ENTRY_TAG = b"vsc-audit-entry\0"

BATCH = 128  # key-use entries kept in memory at most: the bound of entries a SIGKILL loses is BATCH - 1
MAX_AGE_NS = 1_000_000_000  # an entry recorded this long after the last write writes the batch
MAX_PENDING = 16 * BATCH  # while the store cannot be written, older entries beyond this are dropped (logged)
MAX_BLOCK = 4096  # entries stored in one block at most (a block counts them in 2 bytes)

# What a card key is used for; the PIN events carry the role in their kind (login-user, block-so...).
SIGN, DECRYPT, DERIVE, UNWRAP, WRAP, OTP_CODE = "sign", "decrypt", "derive", "unwrap", "wrap", "otp-code"


class Who(NamedTuple):
    """The fixed part of a key use's entry, made once per prepared operation (not per signature)."""

    card_id: int
    kind: str
    key_id: str
    key_label: str
    mechanism: int | None


class _Tail(NamedTuple):
    """A card's serial, signed head and last entry (number, hash), as read or written in a transaction."""

    serial: str
    head: Head | None
    last: tuple[int, bytes] | None


class AuditBroken(Exception):
    """The chain does not verify; `seq` is the first bad entry's number."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit log broken at entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


# --- the chain ---------------------------------------------------------------------------------------


def genesis(serial: str) -> bytes:
    """The `prev` of a card's first entry: bound to the card, so a chain cannot be moved to another card."""
    import hashlib

    return hashlib.sha256(b"vsc-audit-genesis\0" + serial.encode()).digest()


def encode_text(*fields: str) -> bytes:
    """Text fields, each as its UTF-8 length (4 bytes, big-endian) then its bytes: one reading only."""
    return audit_store.encode_texts(fields)


def chain_hash(prev: bytes, seq: int, at: int, described: bytes, result: bytes) -> bytes:
    """SHA-256 over the canonical encoding of an entry: a tag, the previous hash, the number and time (8 bytes
    each, big-endian), then the text fields (encode_text of kind, key id, key label, mechanism, origin; then
    of result). The writer encodes the fixed fields once per key and mechanism, not once per entry."""
    import hashlib

    return hashlib.sha256(
        _ENTRY_TAG + prev + seq.to_bytes(8, "big") + at.to_bytes(8, "big") + described + result
    ).digest()


def entry_hash(e: Entry) -> bytes:
    described = encode_text(e.kind, e.key_id, e.key_label, e.mechanism, e.origin)
    return chain_hash(e.prev, e.seq, e.time, described, encode_text(e.result))


def head_message(serial: str, seq: int, digest: bytes) -> bytes:
    return b"vsc-audit-head\0" + serial.encode() + b"\0" + seq.to_bytes(8, "big") + digest


def _key_aad(serial: str) -> bytes:
    return f"vsc-audit-key:{serial}".encode()


def unseal_key(device_key: bytes, serial: str, sealed: bytes) -> Any:
    """The card's audit key (Ed25519), or None when it was not sealed on this device for this card."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from vsc_provider.token import keywrap

    raw = keywrap.unseal(device_key, sealed, _key_aad(serial))
    return None if raw is None else ed25519.Ed25519PrivateKey.from_private_bytes(raw)


def _new_key(device_key: bytes, serial: str) -> tuple[Any, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from vsc_provider.token import keywrap

    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return key, keywrap.seal(device_key, raw, _key_aad(serial))


_MECHANISM_NAMES: dict[int, str] = {}


def mechanism_name(mech: int | None) -> str:
    if mech is None:
        return ""
    if not _MECHANISM_NAMES:
        for name, value in vars(C).items():
            if name.startswith("CKM_") and isinstance(value, int):
                _MECHANISM_NAMES.setdefault(value, name)
    return _MECHANISM_NAMES.get(mech, f"CKM_0x{mech:X}")


def _origin() -> str:
    """The program this process runs (firefox, ssh, vsc, python3) and its pid: read once per log."""
    try:
        with open("/proc/self/comm") as f:
            program = f.read().strip()
    except OSError:
        import sys

        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "?"
    return f"{program}[{os.getpid()}]"


# --- writing -----------------------------------------------------------------------------------------


class AuditLog:
    """One process's writer of the store's audit log (one per engine)."""

    def __init__(self, store: Store, device_key: bytes) -> None:
        self.store = store
        self.device_key = device_key
        self.front_end = "token"  # set by whoever starts the engine: pkcs11, cli, agent...
        self.pending: collections.deque[tuple[int, Who, int]] = collections.deque()
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self._program = ""
        self._written_at = _time_ns()
        self._described: dict[tuple[Who, str], bytes] = {}  # encoded fixed fields
        self._keys: dict[int, tuple[bytes, Any]] = {}  # card id -> (sealed key, unsealed key)
        self._dropped = 0
        self._tails: dict[int, _Tail] = {}  # card id -> what this process last wrote
        self._seen: tuple[int, int] | None = None  # the store's data_version and this connection's changes then
        atexit.register(_flush_at_exit, weakref.ref(self))

    @property
    def origin(self) -> str:
        if not self._program:
            self._program = _origin()
        return f"{self.front_end}/{self._program}"

    def use(self, who: Who, rv: int) -> None:
        """A key use (the hot path: an append; the batch is written when full or old)."""
        now = _time_ns()
        pending = self.pending
        pending.append((now, who, rv))
        if len(pending) >= BATCH or now - self._written_at > MAX_AGE_NS:
            self.flush(wait=False)

    def event(self, card_id: int, kind: str, rv: int = C.CKR_OK) -> None:
        """A PIN event (login, PIN change, block, unblock): written at once with whatever waits."""
        self.pending.append((time.time_ns(), Who(card_id, kind, "", "", None), rv))
        self.flush()

    def flush(self, wait: bool = True) -> None:
        """Write what waits. Never raises: a failed write keeps the entries for the next one (up to
        MAX_PENDING). Without `wait`, a write already under way in another thread takes these entries too.
        The caller must not hold the store's lock (a write in another thread holds this log's lock first)."""
        if os.getpid() != self.pid:
            # A forked child: what is buffered is the parent's to write, and the store handle is the parent's.
            self.pending.clear()
            return
        if not self.lock.acquire(blocking=wait):
            return
        try:
            # Taken one by one: another thread may append meanwhile (without this lock).
            popleft = self.pending.popleft
            items = [popleft() for _ in range(len(self.pending))]
            if not items:
                return
            self._written_at = _time_ns()
            try:
                self._write(items)
            except (sqlite3.Error, OSError, CKRError) as exc:
                log.warning("cannot write %d audit entries yet: %s", len(items), exc)
                self.pending.extendleft(reversed(items))
                while len(self.pending) > MAX_PENDING:
                    self.pending.popleft()
                    self._dropped += 1
                if self._dropped:
                    log.error("%d audit entries dropped: the store could not be written", self._dropped)
        finally:
            self.lock.release()

    def _write(self, items: list[tuple[int, Who, int]]) -> None:
        cards = {who.card_id for _, who, _ in items}
        if len(cards) == 1:  # the usual case: one card's uses
            by_card = {cards.pop(): items}
        else:
            by_card = {}
            for item in items:
                by_card.setdefault(item[1].card_id, []).append(item)
        origin = self.origin
        with self.store.audit_transaction() as db:
            # What this process read and wrote last time still holds when no other connection committed since
            # (data_version) and this one changed nothing else (total_changes): then the card's serial, head and
            # last entry need no reading.
            seen = (db.execute("PRAGMA data_version").fetchone()[0], db.total_changes)
            if seen != self._seen:
                self._tails.clear()
            self._seen = None  # until this transaction commits
            for card_id, uses in by_card.items():
                tail = self._tails.get(card_id)
                if tail is None:
                    serial = self.store.card_serial(db, card_id)
                    if serial is None:  # a deleted card's entries go with it
                        continue
                    tail = _Tail(serial, audit_store.head(db, card_id), audit_store.last(db, card_id))
                for start in range(0, len(uses), MAX_BLOCK):
                    tail = self._append(db, card_id, tail, uses[start : start + MAX_BLOCK], origin)
                self._tails[card_id] = tail
            written = (seen[0], db.total_changes)
        self._seen = written

    def _append(
        self, db: sqlite3.Connection, card_id: int, tail: _Tail, uses: list[tuple[int, Who, int]], origin: str
    ) -> _Tail:
        """Inside the write lock: continue the chain from what is stored now (another process may have
        written since), and sign the new head only when the stored chain ends at the signed head (a chain
        whose end was cut or rolled back stays unsigned, so `verify` keeps reporting it). Returns the new tail."""
        serial, head, last = tail
        if head is None and last is None:
            key, sealed = _new_key(self.device_key, serial)
            self._keys[card_id] = (sealed, key)
        elif head is not None and last is not None and head.seq == last[0] and head.hash == last[1]:
            key = self._key(card_id, serial, head.sealed_key)
            sealed = head.sealed_key
        else:
            key = sealed = None
            log.error("the audit log of card %s does not end at its signed head: entries stay unsigned", serial)
        seq, prev = (0, genesis(serial)) if last is None else last
        if head is not None and head.seq > seq:  # entries after the signed head were removed: leave the gap
            seq, prev = head.seq, head.hash
        first = seq + 1
        block, seq, prev = self._pack(seq, prev, uses, origin)
        audit_store.insert(db, card_id, first, seq, block)
        if key is not None and sealed is not None:
            signature = key.sign(head_message(serial, seq, prev))
            head = Head(seq, prev, signature, sealed)
            audit_store.set_head(db, card_id, head)
        return _Tail(serial, head, (seq, prev))

    def _pack(self, seq: int, prev: bytes, uses: list[tuple[int, Who, int]], origin: str) -> tuple[bytes, int, bytes]:
        """Chain the uses on from entry `seq` with hash `prev`: the block that stores them, the last entry's
        number and hash. The text an entry shares with other uses of its key, mechanism and result is encoded
        once per batch, for the hash and for the block."""
        from hashlib import sha256

        first_prev = prev
        times = [at_ns // 1000 for at_ns, _, _ in uses]
        hashes: list[bytes] = []
        add = hashes.append
        descriptions: list[bytes] = []
        runs: list[tuple[int, int]] = []  # (position, description) where a run of one description starts
        shared: dict[tuple[Who, int], tuple[int, bytes, Callable[..., bytes]]] = {}
        last_who: Who | None = None
        last_rv = 0
        encoded = b""
        message: Callable[..., bytes] = struct.pack  # set by the first use (a new run)
        first = seq + 1
        for (_, who, rv), at in zip(uses, times, strict=True):
            if who is not last_who or rv != last_rv:  # a batch is mostly runs of one key's uses
                fields = shared.get((who, rv))
                if fields is None:
                    text = self._describe(who, origin) + encode_text(rv_name(rv))
                    # chain_hash's input for this description, in one struct call per entry
                    pack = struct.Struct(f">{len(_ENTRY_TAG)}s32sQQ{len(text)}s").pack
                    fields = shared[who, rv] = (len(descriptions), text, pack)
                    descriptions.append(text)
                runs.append((seq + 1 - first, fields[0]))
                _, encoded, message = fields
                last_who, last_rv = who, rv
            seq += 1
            prev = sha256(message(_ENTRY_TAG, prev, seq, at, encoded)).digest()  # chain_hash, inlined
            add(prev)
        described: list[int] = []
        for (start, index), (end, _) in itertools.pairwise([*runs, (len(uses), 0)]):
            described += [index] * (end - start)
        block = audit_store.pack_block(descriptions, {0: first_prev}, range(first, seq + 1), times, described, hashes)
        return block, seq, prev

    def _describe(self, who: Who, origin: str) -> bytes:
        """encode_text of the fields a use shares with every use of its key and mechanism (not the result)."""
        found = self._described.get((who, origin))
        if found is None:
            found = encode_text(who.kind, who.key_id, who.key_label, mechanism_name(who.mechanism), origin)
            if len(self._described) > 1024:
                self._described.clear()
            self._described[who, origin] = found
        return found

    def _key(self, card_id: int, serial: str, sealed: bytes) -> Any:
        cached = self._keys.get(card_id)
        if cached is not None and cached[0] == sealed:
            return cached[1]
        key = unseal_key(self.device_key, serial, sealed)
        if key is None:
            log.error("the audit key of card %s was not sealed on this device: entries stay unsigned", serial)
            return None
        self._keys[card_id] = (sealed, key)
        return key


def _flush_at_exit(ref: weakref.ref[AuditLog]) -> None:
    audit = ref()
    if audit is not None:
        audit.flush()


# --- reading and verifying ----------------------------------------------------------------------------


def entries(store: Store, card_id: int) -> tuple[list[Entry], Head | None]:
    with store.reading() as db:
        db.execute("BEGIN")
        try:
            return audit_store.entries(db, card_id), audit_store.head(db, card_id)
        finally:
            db.execute("COMMIT")


def verify(device_key: bytes, serial: str, chain: list[Entry], head: Head | None) -> int:
    """The number of entries when the chain is whole and ends at a head signed by this card's audit key;
    else AuditBroken naming the first bad entry."""
    prev = genesis(serial)
    expected = 1
    for e in chain:
        if e.seq > expected:
            raise AuditBroken(expected, f"entry {expected} is missing")
        if e.seq < expected:
            raise AuditBroken(e.seq, f"entry {e.seq} appears twice or out of order")
        if e.prev != prev:
            raise AuditBroken(e.seq, f"entry {e.seq} does not follow entry {e.seq - 1} (moved or reordered)")
        if entry_hash(e) != e.hash:
            raise AuditBroken(e.seq, f"entry {e.seq} was changed")
        prev = e.hash
        expected += 1
    count = expected - 1
    if head is None:
        if chain:
            raise AuditBroken(1, "the log has no signed head")
        return 0
    if head.seq > count:
        raise AuditBroken(count + 1, f"entry {count + 1} is missing (the signed head covers entry {head.seq})")
    key = unseal_key(device_key, serial, head.sealed_key)
    if key is None:
        raise AuditBroken(head.seq, "the audit key was not sealed on this device for this card")
    from cryptography.exceptions import InvalidSignature

    if chain[head.seq - 1].hash != head.hash:
        raise AuditBroken(head.seq, f"entry {head.seq} does not match the signed head")
    try:
        key.public_key().verify(head.signature, head_message(serial, head.seq, head.hash))
    except InvalidSignature:
        raise AuditBroken(head.seq, f"the signature of the head (entry {head.seq}) does not verify") from None
    if count > head.seq:
        raise AuditBroken(head.seq + 1, f"entries {head.seq + 1} to {count} are not covered by the signed head")
    return count


def public_key_hex(device_key: bytes, serial: str, head: Head | None) -> str:
    """The card's audit public key (raw Ed25519, hex), for an auditor who checks the head elsewhere."""
    from cryptography.hazmat.primitives import serialization

    key = None if head is None else unseal_key(device_key, serial, head.sealed_key)
    if key is None:
        return ""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
