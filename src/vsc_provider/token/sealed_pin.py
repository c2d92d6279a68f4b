"""A card's user PIN kept for fingerprint approval: sealed (AES-GCM) under a key derived from the card's
device-key layer (token/card_layer.py: the TPM, the kernel keyring or the device-key file), in the store's meta
table under the card's serial, with the count of fingerprint no-matches since the last good approval. A change
or reset of the user PIN forgets it in the same transaction (the engine's PIN change: token/engine.py).

The PIN is not needed to unseal it: whoever can use the card's device-key layer (this user on this machine)
can. What keeps it is the caller's rule that it is unsealed only after fprintd reports a match. A copied store
does not open elsewhere (the layer stays behind). An entry made for an earlier life of the card (re-initialised
since) is ignored.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from typing import Any

from vsc_provider.token import keywrap
from vsc_provider.token.card import Card
from vsc_provider.token.store import Store

MAX_FAILURES = 3  # fingerprint no-matches in a row after which only the PIN approves


def _name(card: Card) -> str:
    return f"fingerprint-pin:{card.serial}"


def _aad(card: Card) -> bytes:
    return f"vsc-fingerprint-pin:{card.serial}:{card.record.created}".encode()


def _key(layer_key: bytes, card: Card) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = f"vsc-card:{card.serial}:fingerprint-pin".encode()
    return HKDF(hashes.SHA256(), keywrap.KEY_SIZE, salt=None, info=info).derive(layer_key)


def _entry(card: Card, raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    entry: dict[str, Any] = json.loads(raw)
    return entry if entry.get("created") == card.record.created else None


def _read(db: sqlite3.Connection, card: Card) -> dict[str, Any] | None:
    return _entry(card, Store.meta(db, _name(card)))


def read(store: Store, card: Card) -> dict[str, Any] | None:
    """The card's entry, or None when fingerprint approval is not enabled for it."""
    return _entry(card, store.read_meta(_name(card)))


def enable(store: Store, card: Card, layer_key: bytes, pin: bytes) -> None:
    """Seal `pin` (the caller has checked it) for the card; any earlier entry and its count are replaced."""
    sealed = keywrap.seal(_key(layer_key, card), pin, _aad(card))
    entry = {"created": card.record.created, "pin": base64.b64encode(sealed).decode(), "failures": 0}
    with store.transaction() as db:
        store.set_meta(db, _name(card), json.dumps(entry))


def disable(store: Store, card: Card) -> bool:
    """Forget the sealed PIN; whether there was one."""
    with store.transaction() as db:
        return store.delete_meta(db, _name(card))


def forget(db: sqlite3.Connection, card: Card) -> bool:
    """Forget the sealed PIN inside the caller's write transaction: the card service does so in the one that
    changes or resets the user PIN, so that a sealed old PIN never outlives the change. Whether there was one."""
    return Store.delete_meta(db, _name(card))


def unseal(card: Card, layer_key: bytes, entry: dict[str, Any]) -> bytes | None:
    """The PIN of an entry; None when it does not open (another machine's layer, or altered)."""
    return keywrap.unseal(_key(layer_key, card), base64.b64decode(entry["pin"]), _aad(card))


def usable(entry: dict[str, Any] | None) -> bool:
    return entry is not None and int(entry.get("failures", 0)) < MAX_FAILURES


def count_failure(store: Store, card: Card) -> int:
    """One more no-match; the count now (0 when the entry is gone)."""
    with store.transaction() as db:
        entry = _read(db, card)
        if entry is None:
            return 0
        entry["failures"] = int(entry.get("failures", 0)) + 1
        store.set_meta(db, _name(card), json.dumps(entry))
        return int(entry["failures"])


def reset_failures(store: Store, card: Card) -> None:
    """After an approval (by fingerprint or PIN): the no-matches start again from zero."""
    with store.transaction() as db:
        entry = _read(db, card)
        if entry is not None and entry.get("failures"):
            entry["failures"] = 0
            store.set_meta(db, _name(card), json.dumps(entry))
