"""The audit log: every use of a card key, login, PIN change, block and unblock, kept in the store as a
hash chain per card (each entry carries the previous entry's hash), its head signed by the card's audit key.
Entries name the key, mechanism, front end and result, never data, digests of data or PINs.

This module has the chain, its reading and verifying; token/audit_writer.py writes it (key uses through a
journal a SIGKILL does not lose, folded in bulk) and token/audit_store.py stores it.

The audit key is an Ed25519 key per card, sealed under the device key only (not the PIN), so that any process
on this device can sign the head after its writes, logged in or not. It proves that the signed entries were
written on this device and not changed, removed or reordered since, to anyone who can read the store but not
the device key (a stolen or copied store, a backup, another user's process with write access to the file).
It does not protect against the user's own account: whoever can read the device key can re-seal a forged
chain. Deleting a whole card's log (entries and head) shows only as a log that starts again at 1.
"""

from __future__ import annotations

import os
import struct
from typing import Any, NamedTuple

from vsc_provider.ck import constants as C
from vsc_provider.token import audit_store
from vsc_provider.token.audit_store import Entry, Head
from vsc_provider.token.store import Store

_ENTRY_TAG = b"vsc-audit-entry\0"

# What a card key is used for; the PIN events carry the role in their kind (login-user, block-so...).
SIGN, DECRYPT, DERIVE, UNWRAP, WRAP, OTP_CODE = "sign", "decrypt", "derive", "unwrap", "wrap", "otp-code"


class Who(NamedTuple):
    """The fixed part of a key use's entry, made once per prepared operation (not per signature)."""

    card_id: int
    kind: str
    key_id: str
    key_label: str
    mechanism: int | None


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


def new_key(device_key: bytes, serial: str) -> tuple[Any, bytes]:
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


def origin_of_process() -> str:
    """The program this process runs (firefox, ssh, vsc, python3) and its pid: read once per log."""
    try:
        with open("/proc/self/comm") as f:
            program = f.read().strip()
    except OSError:
        import sys

        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "?"
    return f"{program}[{os.getpid()}]"


def chain_block(
    seq: int, prev: bytes, texts: list[bytes], described: list[int], times: list[int]
) -> tuple[bytes, int, bytes]:
    """Chain entries on from entry SEQ with hash PREV: each entry's description (a number into TEXTS, each the
    encode_text of kind, key id, key label, mechanism, origin and result) and time (microseconds). Returns the
    block that stores them, the last entry's number and hash."""
    from hashlib import sha256

    first_prev = prev
    first = seq + 1
    # chain_hash's input for each description, in one struct call per entry
    packs = [struct.Struct(f">{len(_ENTRY_TAG)}s32sQQ{len(text)}s").pack for text in texts]
    hashes: list[bytes] = []
    add = hashes.append
    for seq, at, number in zip(range(first, first + len(times)), times, described, strict=True):
        prev = sha256(packs[number](_ENTRY_TAG, prev, seq, at, texts[number])).digest()  # chain_hash, inlined
        add(prev)
    last = first + len(times) - 1
    block = audit_store.pack_block(texts, {0: first_prev}, range(first, last + 1), times, described, hashes)
    return block, last, prev


# --- reading and verifying ----------------------------------------------------------------------------


def entries(store: Store, card_id: int) -> tuple[list[Entry], Head | None]:
    with store.snapshot() as db:
        return audit_store.entries(db, card_id), audit_store.head(db, card_id)


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
