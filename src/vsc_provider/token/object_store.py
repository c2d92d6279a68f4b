"""Creating, changing and destroying a card's objects: token objects in the store (their material sealed),
session objects in this process only."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import sealing
from vsc_provider.token.card import SESSION_OBJECT_BASE, Card, check_trusted
from vsc_provider.token.objects import TokenObject
from vsc_provider.token.store import Store


class ObjectStore:
    """The object operations of one engine (its store, device key and lock)."""

    def __init__(self, store: Store, device_key: bytes, lock: threading.RLock) -> None:
        self.store = store
        self.device_key = device_key
        self.lock = lock
        self._session_handles = SESSION_OBJECT_BASE

    def _prepare(self, card: Card, attrs: dict[int, bytes], material: bytes | None) -> tuple[bytes, bytes | None, bool]:
        """A new token object's uid (also its CKA_UNIQUE_ID), sealed material and whether the data key sealed it."""
        uid = os.urandom(16)
        attrs[C.CKA_UNIQUE_ID] = uid.hex().encode()
        secret, under_data_key = sealing.seal(self.device_key, card, attrs, material, uid)
        return uid, secret, under_data_key

    def add(self, card: Card, attrs: dict[int, bytes], material: bytes | None, token: bool, owner: int) -> TokenObject:
        """Store a new object, settled by the card's policy; key material is sealed under the card's data key
        (so login is needed), or, for a key a compatible card lets be public, under its public-object key."""
        attrs = card.policy.settle(attrs)
        check_trusted(card, attrs)
        with self.lock:
            if not token:
                uid = os.urandom(16)
                attrs[C.CKA_UNIQUE_ID] = uid.hex().encode()
                self._session_handles += 1
                obj = TokenObject(self._session_handles, uid, attrs, material=material, owner=owner)
                card.session_objects[obj.handle] = obj
                return obj
        return self.add_many(card, [(attrs, material)], settled=True)[0]

    def add_many(
        self,
        card: Card,
        items: list[tuple[dict[int, bytes], bytes | None]],
        settled: bool = False,
        check: Callable[[list[dict[int, bytes]]], None] | None = None,
    ) -> list[TokenObject]:
        """Several token objects in one transaction (a key pair is stored whole or not at all). `check`, inside
        the write, is given the attributes of the card's committed objects and may refuse (raise): then
        nothing is stored, and no other process can add between its look and the insert."""
        if not settled:
            items = [(card.policy.settle(attrs), material) for attrs, material in items]
            for attrs, _ in items:
                check_trusted(card, attrs)
        with self.lock:
            generation = card.record.created
            prepared = [(attrs, *self._prepare(card, attrs, material)) for attrs, material in items]
            under_data_key = any(by_data_key for *_, by_data_key in prepared)
            out = []
            with self.store.transaction() as db:
                self._check_generation(db, card, generation, under_data_key)
                if check is not None:
                    check(self.store.card_object_attrs(db, card.slot_id))
                for attrs, uid, secret, _ in prepared:
                    handle = self.store.insert_object(db, card.slot_id, uid, attrs, secret)
                    out.append(TokenObject(handle, uid, attrs, secret=secret))
            for obj in out:
                card.objects[obj.handle] = obj
            return out

    def _check_generation(self, db: sqlite3.Connection, card: Card, generation: float, sealed: bool) -> None:
        """Inside a write: the card still exists and, if we sealed material, under its current data key."""
        rec = self.store.card(db, card.slot_id)
        if rec is None:
            raise CKRError(C.CKR_TOKEN_NOT_PRESENT, "the card was deleted")
        if sealed and rec.created != generation:
            card.forget_secrets()
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "the card was re-initialised by another process: log in again")

    def update_attrs(self, card: Card, obj: TokenObject, attrs: dict[int, bytes]) -> None:
        check_trusted(card, attrs)
        with self.lock:
            merged = {**obj.attrs, **attrs}
            if obj.is_token:
                with self.store.transaction() as db:
                    if not self.store.object_exists(db, obj.handle):
                        raise CKRError(C.CKR_OBJECT_HANDLE_INVALID, "the object was destroyed")
                    self.store.update_object(db, obj.handle, merged)
            obj.attrs = merged
            obj.klass = A.get_ulong(merged, C.CKA_CLASS, C.CKO_DATA)
            obj.private = A.get_bool(merged, C.CKA_PRIVATE)

    def destroy(self, card: Card, obj: TokenObject) -> None:
        with self.lock:
            if obj.is_token:
                with self.store.transaction() as db:
                    self.store.delete_object(db, obj.handle)
                card.objects.pop(obj.handle, None)
            else:
                card.session_objects.pop(obj.handle, None)
            card.keys.pop(obj.handle, None)
            for prepared in [p for p in card.signers if p[0] == obj.handle]:
                del card.signers[prepared]  # the loaded private key goes with it

    def drop_session_objects(self, card: Card, owner: int) -> None:
        with self.lock:
            for handle in [h for h, o in card.session_objects.items() if o.owner == owner]:
                del card.session_objects[handle]
                card.keys.pop(handle, None)
