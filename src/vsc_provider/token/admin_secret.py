"""A card's administrative symmetric key, as card edges other than PKCS#11 have one (the minidriver's admin
key, the PIV management key): kept in the store's meta table under the card's serial, as JSON, sealed like the
card's other secrets. The key itself is sealed under the device key (a card checks a response to a challenge
without any PIN, as a real card does); a copy of the card's data key is wrapped under a key derived from it
and then the device key, so that a proved administrator can change what needs the data key. An entry made for
an earlier life of the card (re-initialised since: a new data key) is ignored.

Front ends reach it through the engine they were given (read, write, prove), never through the store: a
response is checked and its wrong try counted in one write transaction here.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from vsc_provider.token import keywrap
from vsc_provider.token.card import Card
from vsc_provider.token.engine import Engine


class Proof(NamedTuple):
    """What a counted check of a response found (AdminSecret.prove)."""

    entry: dict[str, Any] | None  # None: the card has no key
    blocked: bool  # the wrong tries had reached the limit already: nothing checked
    key: bytes | None  # the card's key, when it was checked (None: blocked, not asked, or it does not open)
    right: bool


@dataclass(frozen=True)
class AdminSecret:
    meta_prefix: str  # the meta table's key: "<prefix>:<serial>"
    aad_prefix: str  # associated data: "<prefix>:<serial>:<created>:<what>"
    layer_info: bytes  # HKDF info of the layer derived from the key

    def _name(self, card: Card) -> str:
        return f"{self.meta_prefix}:{card.serial}"

    def _aad(self, card: Card, what: str) -> bytes:
        return f"{self.aad_prefix}:{card.serial}:{card.record.created}:{what}".encode()

    def _layer(self, key: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(hashes.SHA256(), keywrap.KEY_SIZE, None, self.layer_info).derive(key)

    def _read(self, db: sqlite3.Connection, engine: Engine, card: Card) -> dict[str, Any] | None:
        raw = engine.store.meta(db, self._name(card))
        if raw is None:
            return None
        entry: dict[str, Any] = json.loads(raw)
        return entry if entry.get("created") == card.record.created else None

    def read(self, engine: Engine, card: Card) -> dict[str, Any] | None:
        """The card's entry, or None."""
        with engine.store.transaction() as tx:
            return self._read(tx, engine, card)

    def write(self, engine: Engine, card: Card, entry: dict[str, Any]) -> None:
        with engine.store.transaction() as tx:
            engine.store.set_meta(tx, self._name(card), json.dumps(entry))

    def prove(self, engine: Engine, card: Card, limit: int, matches: Callable[[bytes], bool] | None) -> Proof:
        """Check a response with the card's key, counted: in one write transaction, read the entry, and unless
        its wrong tries reached LIMIT, ask MATCHES (None: there is nothing to check) whether the key gives the
        response, and store the count (0 when right, one more when wrong)."""
        store = engine.store
        with store.transaction() as db:
            entry = self._read(db, engine, card)
            if entry is None:
                return Proof(None, False, None, False)
            blocked = entry["failures"] >= limit
            key = None if blocked or matches is None else self.key(engine.device_key, card, entry)
            right = False
            if key is not None and matches is not None:
                right = matches(key)
                entry["failures"] = 0 if right else entry["failures"] + 1
                store.set_meta(db, self._name(card), json.dumps(entry))
        return Proof(entry, blocked, key, right)

    def new_entry(self, device_key: bytes, card: Card, key: bytes, data_key: bytes, **extra: Any) -> dict[str, Any]:
        """An entry holding `key` and the card's data key under it (plus the caller's own fields)."""
        wrapped = keywrap.wrap_layers(data_key, [self._layer(key), device_key], self._aad(card, "data-key"))
        return {
            "created": card.record.created,
            **extra,
            "key": base64.b64encode(keywrap.seal(device_key, key, self._aad(card, "key"))).decode(),
            "data_key": base64.b64encode(wrapped).decode(),
        }

    def key(self, device_key: bytes, card: Card, entry: dict[str, Any]) -> bytes | None:
        """The key of an entry; None when it does not open (another device's store)."""
        return keywrap.unseal(device_key, base64.b64decode(entry["key"]), self._aad(card, "key"))

    def data_key(self, device_key: bytes, card: Card, entry: dict[str, Any], key: bytes) -> bytes | None:
        """The card's data key, as the entry's (proved) key holds it; None when it does not open."""
        aad = self._aad(card, "data-key")
        inner = keywrap.unseal(device_key, base64.b64decode(entry["data_key"]), aad)
        return None if inner is None else keywrap.unseal(self._layer(key), inner, aad)
