"""The token engine: the cards of one store as this process sees them, with login state and loaded keys.

One Engine per process. It re-reads the store only when another process has committed: `poll()` (one
memory read of the store's change signal, at the start of every PKCS#11 call that uses a session) and then
PRAGMA data_version tell it so. Signing after login touches neither the store nor the KDF: keys are unsealed
once and kept in memory until logout, finalize or the last session closing.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from vsc_provider import config
from vsc_provider import log as vlog
from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import keywrap
from vsc_provider.token.objects import DSA_DH_KEY_TYPES, TokenObject, profile_attrs
from vsc_provider.token.online import OnlinePinCheck
from vsc_provider.token.pin import PinPolicy
from vsc_provider.token.policy import STRICT, CardPolicy
from vsc_provider.token.store import CardRecord, ObjectRecord, Store

# Random bytes come from os.urandom (what `secrets` uses) without importing `secrets`, whose hmac and
# OpenSSL hashlib imports would add to every host's C_Initialize.

log = vlog.get("vsc.token")

SESSION_OBJECT_BASE = 0x40000000
PROFILE_OBJECT_BASE = 0x20000000


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_device_key(where: str | os.PathLike[str]) -> bytes:
    """The device key (created on first use, readable by the user only)."""
    path = os.fspath(where)
    try:
        data = _read(path)
    except FileNotFoundError:
        folder, name = os.path.split(path)
        os.makedirs(folder or ".", mode=0o700, exist_ok=True)
        key = os.urandom(keywrap.KEY_SIZE)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process created first
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        finally:
            os.unlink(tmp)
        data = _read(path)
    if len(data) != keywrap.KEY_SIZE:
        raise CKRError(C.CKR_DEVICE_ERROR, f"device key {path} is damaged")
    return data


def _aad(serial: str, role: str) -> bytes:
    return f"vsc-card:{serial}:{role}".encode()


def _public_sealed(card: Card, private: bool) -> bool:
    """Whether an object's key material is sealed under the public-object key rather than the data key: a
    key with CKA_PRIVATE false, which only a compatible card has (CKA_PRIVATE never changes after creation)."""
    return not private and card.policy.public_keys


def _check_trusted(card: Card, attrs: dict[int, bytes]) -> None:
    """CKA_TRUSTED marks a key that may wrap CKA_WRAP_WITH_TRUSTED keys: only the SO may set it."""
    if A.get_bool(attrs, C.CKA_TRUSTED) and not card.so:
        raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, "only the security officer can set CKA_TRUSTED")


def _server_checked(rec: CardRecord) -> bool:
    return bool(rec.server) and (rec.server or {}).get("pin_check") == "server"


def _provisioning(rec: CardRecord) -> bool:
    """A card whose activation has not finished: hidden from every process but the activating one."""
    return (rec.server or {}).get("state") == "activating"


class Card:
    """One card in this process: its record, objects, and (after login) its data key and loaded keys."""

    __slots__ = (
        "_objects",
        "data_key",
        "keys",
        "loader",
        "policy",
        "profile",
        "record",
        "session_objects",
        "signers",
        "so",
        "user",
    )

    def __init__(
        self, record: CardRecord, policy: CardPolicy, loader: Callable[[Card], dict[int, TokenObject]] | None = None
    ) -> None:
        self.record = record
        self.policy = policy
        # Token objects are read from the store the first time this process looks at the card: a host that
        # only lists slots, or uses one card of many, never decodes the others' objects.
        self.loader = loader
        self._objects: dict[int, TokenObject] | None = None
        self.session_objects: dict[int, TokenObject] = {}
        self.user = False
        self.so = False
        self.data_key: bytes | None = None
        self.keys: dict[int, Any] = {}
        # Prepared signers by (key handle, mechanism), with the object and attribute dict they were checked
        # against: C_SignInit on a key already used is a dict lookup (see pkcs11.signing.sign_init).
        self.signers: dict[tuple[int, Any], tuple[Any, TokenObject, dict[int, bytes], bool]] = {}
        self.profile: TokenObject | None = None

    def __repr__(self) -> str:
        return f"Card(slot={self.record.id}, serial={self.record.serial}, label={self.record.label!r})"

    @property
    def objects(self) -> dict[int, TokenObject]:
        if self._objects is None:
            self._objects = self.loader(self) if self.loader is not None else {}
        return self._objects

    @objects.setter
    def objects(self, value: dict[int, TokenObject]) -> None:
        self._objects = value

    @property
    def loaded(self) -> bool:
        return self._objects is not None

    @property
    def slot_id(self) -> int:
        return self.record.id

    @property
    def serial(self) -> str:
        return self.record.serial

    @property
    def label(self) -> str:
        return self.record.label

    def all_objects(self) -> list[TokenObject]:
        base = [self.profile] if self.profile else []
        return [*base, *self.objects.values(), *self.session_objects.values()]

    def get(self, handle: int) -> TokenObject | None:
        obj = self.objects.get(handle) or self.session_objects.get(handle)
        if obj is None and self.profile is not None and handle == self.profile.handle:
            return self.profile
        return obj

    def visible(self, obj: TokenObject) -> bool:
        return self.user or not obj.private

    def replace_record(self, rec: CardRecord) -> None:
        """Take the store's newer record; after C_InitToken elsewhere (a new generation) our data key is dead."""
        if rec.created != self.record.created:
            self.forget_secrets()
        self.record = rec

    def forget_secrets(self) -> None:
        self.user = False
        self.so = False
        self.data_key = None
        self.keys.clear()
        self.signers.clear()


class Engine:
    """The cards of the store at VSC_HOME, as one process sees them."""

    def __init__(
        self, store_path: str | os.PathLike[str] | None = None, device_key_path: str | os.PathLike[str] | None = None
    ) -> None:
        where = os.fspath(store_path or config.store_path())
        try:
            self.store = Store(where)
            self.device_key = load_device_key(device_key_path or config.device_key_path())
        except (OSError, sqlite3.Error) as exc:
            # One line for the user; the traceback only in the debug log (VSC_DEBUG=1).
            if vlog.TRACE:
                log.exception("cannot open the card store %s", where)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            culprit = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
            raise CKRError(C.CKR_DEVICE_ERROR, f"cannot open the card store {where}: {reason}{culprit}") from None
        # The server side of server-checked PINs, installed by whoever starts the engine (token/online.py).
        self.online: OnlinePinCheck | None = None
        self.cards: dict[int, Card] = {}
        self.hidden: dict[int, CardRecord] = {}  # cards another process is still activating
        self._activating: set[int] = set()  # cards this process is activating
        self.lock = threading.RLock()
        self._version = -1
        self._session_handles = SESSION_OBJECT_BASE
        self.signal = self.store.signal.map
        self.signal_seen = self.signal[:8]
        self.refresh(force=True)

    # --- reading the store --------------------------------------------------------------------

    def poll(self) -> None:
        """Reload if any process committed since the last look (this one included: then nothing is read).
        C_SignInit's prepared path inlines the test: `engine.signal[:8] != engine.signal_seen`."""
        current = self.signal[:8]
        if current != self.signal_seen:
            self.refresh()
            self.signal_seen = current  # only once reloaded: a failed reload is tried again next call

    def refresh(self, force: bool = False) -> bool:
        """Reload cards and objects if another process changed the store; True if anything was reloaded."""
        with self.lock:
            version = self.store.data_version()
            if not force and version == self._version:
                return False
            records, objects = self.store.load(with_objects=[i for i, c in self.cards.items() if c.loaded])
            cards: dict[int, Card] = {}
            self.hidden = {}
            for rec in records:
                if _provisioning(rec) and rec.id not in self._activating:
                    self.hidden[rec.id] = rec
                    continue
                card = self.cards.get(rec.id)
                if card is None or card.serial != rec.serial:
                    card = Card(record=rec, policy=CardPolicy.from_json(rec.policy), loader=self._load_objects)
                    if card.policy.profile:
                        card.profile = TokenObject(
                            PROFILE_OBJECT_BASE + rec.id, b"profile", profile_attrs(C.CKP_PUBLIC_CERTIFICATES_TOKEN)
                        )
                else:
                    card.replace_record(rec)
                    card.policy = CardPolicy.from_json(rec.policy)
                if card.loaded:
                    self._merge_objects(card, objects.get(rec.id, []))
                cards[rec.id] = card
            for slot_id, card in self.cards.items():
                if slot_id not in cards:
                    card.forget_secrets()
            self.cards = cards
            self._version = version  # only once read in full: a failed read is tried again next time
            return True

    def _load_objects(self, card: Card) -> dict[int, TokenObject]:
        with self.lock:
            card.objects = {}
            self._merge_objects(card, self.store.objects(card.slot_id))
            return card.objects

    @staticmethod
    def _merge_objects(card: Card, records: list[ObjectRecord]) -> None:
        """Install a card's objects as read from the store, keeping this process's TokenObject for each one
        that still exists (so loaded keys and handles stay valid)."""
        old = card._objects or {}
        fresh: dict[int, TokenObject] = {}
        for o in records:
            prev = old.get(o.id)
            if prev is not None and prev.uid == o.uid:
                prev.attrs = o.attrs
                prev.klass = A.get_ulong(o.attrs, C.CKA_CLASS, C.CKO_DATA)
                prev.private = A.get_bool(o.attrs, C.CKA_PRIVATE)
                fresh[o.id] = prev
            else:
                fresh[o.id] = TokenObject(o.id, o.uid, o.attrs, secret=o.secret)
        card.objects = fresh
        for handle in list(card.keys):
            if handle not in fresh and handle not in card.session_objects:
                del card.keys[handle]

    def card(self, slot_id: int) -> Card:
        card = self.cards.get(slot_id)
        if card is None:
            self.refresh()
            card = self.cards.get(slot_id)
        if card is None:
            raise CKRError(C.CKR_SLOT_ID_INVALID, f"no card in slot {slot_id}")
        return card

    # --- cards --------------------------------------------------------------------------------

    def create_card(
        self,
        label: str,
        so_pin: bytes,
        user_pin: bytes | None,
        policy: CardPolicy | PinPolicy | None = None,
        kdf: keywrap.KdfParams | None = None,
        server: dict[str, Any] | None = None,
    ) -> Card:
        """A new card. `policy` is its CardPolicy for good (a PinPolicy alone: a strict card with those PIN
        rules); cards are made only here (C_InitToken re-initialises a card and keeps its policy)."""
        if not isinstance(policy, CardPolicy):
            policy = CardPolicy.named(STRICT, policy)
        kdf = kdf or keywrap.KdfParams()
        policy.pin.check(so_pin, so=True)
        if user_pin is not None:
            policy.pin.check(user_pin)
        if not label or len(label.encode()) > 32:
            raise CKRError(C.CKR_ARGUMENTS_BAD, "a card label has 1 to 32 bytes")
        serial = os.urandom(8).hex().upper()
        data_key = os.urandom(keywrap.KEY_SIZE)
        so_salt = os.urandom(16)
        so_wrapped = self._wrap(data_key, policy.pin.kdf_input(so_pin), so_salt, kdf, serial, "so")
        user_salt = user_wrapped = None
        if user_pin is not None:
            user_salt = os.urandom(16)
            user_wrapped = self._wrap(data_key, policy.pin.kdf_input(user_pin), user_salt, kdf, serial, "user")
        rec = CardRecord(
            id=0,
            serial=serial,
            label=label,
            created=time.time(),
            policy=policy.to_json(),
            kdf=kdf.to_json(),
            user_salt=user_salt,
            user_wrapped=user_wrapped,
            so_salt=so_salt,
            so_wrapped=so_wrapped,
            server=server,
        )
        with self.lock:
            with self.store.transaction() as db:
                rec = rec._replace(id=self.store.insert_card(db, rec))
            if _provisioning(rec):
                self._activating.add(rec.id)
            self.refresh(force=True)
            return self.cards[rec.id]

    def adopt_activation(self, slot_id: int) -> Card:
        """Finish here the activation of a card left hidden by a process that died: it becomes visible to
        this process (and, as for create_card, to no other until its binding turns active)."""
        with self.lock:
            self._activating.add(slot_id)
            self.refresh(force=True)
            return self.card(slot_id)

    def delete_card(self, slot_id: int) -> None:
        with self.lock:
            with self.store.transaction() as db:
                self.store.delete_card(db, slot_id)
            self.refresh(force=True)

    def _wrap(
        self,
        data_key: bytes,
        kdf_input: bytes,
        salt: bytes,
        kdf: keywrap.KdfParams,
        serial: str,
        role: str,
        server_secret: bytes | None = None,
    ) -> bytes:
        """Wrap the data key under a PIN (as its policy's kdf_input gives it) and the device key."""
        kek = keywrap.derive(kdf_input, salt, kdf)
        layers = [kek, server_secret, self.device_key] if server_secret else [kek, self.device_key]
        return keywrap.wrap_layers(data_key, layers, _aad(serial, role))

    def bind_server_secret(
        self, card: Card, pin: bytes, secret: bytes | None, server: dict[str, Any] | None = None
    ) -> None:
        """Re-wrap the user's copy of the data key with (or, given None, without) a server-held layer.

        The caller (vsc_provider.provisioning) marks the card's server binding `pin_check: server`, after
        which verify_pin asks the server for that layer: see _online_secret. Given `server`, that binding is
        stored in the same transaction, so no crash leaves the key wrapping and the binding disagreeing.
        """
        if card.data_key is None:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in first")
        salt = os.urandom(16)
        kdf = keywrap.KdfParams(**card.record.kdf)
        secret_input = card.policy.pin.kdf_input(pin)
        wrapped = self._wrap(card.data_key, secret_input, salt, kdf, card.serial, "user", server_secret=secret)
        with self.store.transaction() as db:
            binding = {} if server is None else {"server": server}
            self.store.update_card(db, card.slot_id, user_salt=salt, user_wrapped=wrapped, **binding)
        self.refresh(force=True)

    def set_binding(self, slot_id: int, binding: dict[str, Any]) -> None:
        """Store a card's server binding (the provisioning state: server, device, keys it knows)."""
        self.edit_binding(slot_id, lambda _: binding)

    def edit_binding(self, slot_id: int, edit: Callable[[dict[str, Any]], dict[str, Any] | None]) -> bool:
        """Change a card's binding in one write transaction: `edit` gets the stored binding ({} for none)
        and returns the new one, or None to leave it. False when the card is gone or nothing changed."""
        with self.store.transaction() as db:
            rec = self.store.card(db, slot_id)
            new = None if rec is None else edit(dict(rec.server or {}))
            if new is not None:
                self.store.update_card(db, slot_id, server=new)
        if new is not None:
            self.refresh(force=True)
        return new is not None

    def mark_renewal(self, slot_id: int, wanted: bool) -> None:
        """Record (or clear) the server's request for new keys in a card's binding."""

        def edit(binding: dict[str, Any]) -> dict[str, Any] | None:
            if not binding:
                return None
            binding.pop("renew_requested", None)
            return {**binding, "renew_requested": True} if wanted else binding

        self.edit_binding(slot_id, edit)

    # --- PINs ---------------------------------------------------------------------------------

    def verify_pin(self, card: Card, so: bool, pin: bytes) -> bytes:
        """Check a PIN against the store's counters and return the card's data key.

        The try is counted before the (slow) check, in its own transaction, so that processes guessing at
        once share one counter; a try inside a waiting period is refused without being checked or counted.
        """
        role = "so" if so else "user"
        policy = card.policy.pin
        # A PIN of a shape the policy never allows (a NUL byte, a letter on a strict card, a wrong length)
        # cannot be the card's: refused before the KDF and the server, and not counted as a try.
        malformed = not policy.may_be(pin, so=so)
        server_secret = None
        if not so and not malformed and _server_checked(card.record):
            server_secret = self._online_secret(card.record, pin)  # raises on a refused PIN
        now = time.time()
        with self.store.transaction() as db:
            rec = self.store.card(db, card.slot_id)
            if rec is None:
                raise CKRError(C.CKR_TOKEN_NOT_PRESENT, "the card was deleted")
            wrapped, salt = (rec.so_wrapped, rec.so_salt) if so else (rec.user_wrapped, rec.user_salt)
            failures = rec.so_failures if so else rec.user_failures
            blocked_until = rec.so_blocked_until if so else rec.user_blocked_until
            if wrapped is None or salt is None:
                raise CKRError(C.CKR_USER_PIN_NOT_INITIALIZED, "the user PIN is not set")
            # The outer layer needs only the device key: a store copied to another machine fails here,
            # before any PIN try is counted.
            inner = keywrap.unseal(self.device_key, wrapped, _aad(rec.serial, role))
            if inner is None:
                raise CKRError(C.CKR_DEVICE_ERROR, "this card store belongs to another device (device key mismatch)")
            if failures >= policy.max_tries:
                raise CKRError(C.CKR_PIN_LOCKED, f"{role} PIN blocked after {failures} wrong tries")
            if now < blocked_until:
                raise CKRError(
                    C.CKR_FUNCTION_FAILED, f"{role} PIN tries refused for {blocked_until - now:.1f} more seconds"
                )
            if malformed:
                raise CKRError(C.CKR_PIN_INCORRECT, f"wrong {role} PIN (not a PIN this card's policy allows)")
            self.store.update_card(db, card.slot_id, **{f"{role}_failures": failures + 1})
        card.replace_record(rec)
        if server_secret is not None:
            inner = keywrap.unseal(server_secret, inner, _aad(rec.serial, role)) or b""
        kek = keywrap.derive(policy.kdf_input(pin), salt, keywrap.KdfParams(**rec.kdf))
        data_key = keywrap.unseal(kek, inner, _aad(rec.serial, role))
        with self.store.transaction() as db:
            current = self.store.card(db, card.slot_id)
            if current is None:
                raise CKRError(C.CKR_TOKEN_NOT_PRESENT, "the card was deleted")
            counted = current.so_failures if so else current.user_failures
            if data_key is not None:
                self.store.update_card(db, card.slot_id, **{f"{role}_failures": 0, f"{role}_blocked_until": 0.0})
            else:
                delay = policy.delay_after(counted)
                until = time.time() + delay if delay else 0.0  # the period starts when the failure is known
                self.store.update_card(db, card.slot_id, **{f"{role}_blocked_until": until})
        self.refresh(force=True)
        if data_key is None:
            # This try's own number decides the answer, so concurrent tries get consistent answers.
            this_try = failures + 1
            if this_try >= policy.max_tries:
                raise CKRError(C.CKR_PIN_LOCKED, f"{role} PIN blocked after {this_try} wrong tries")
            raise CKRError(C.CKR_PIN_INCORRECT, f"wrong {role} PIN ({this_try} of {policy.max_tries} tries used)")
        return data_key

    def login(self, card: Card, so: bool, pin: bytes) -> None:
        data_key = self.verify_pin(card, so, pin)
        with self.lock:
            card.data_key = data_key
            if so:
                card.so = True
            else:
                card.user = True

    def logout(self, card: Card) -> None:
        with self.lock:
            card.forget_secrets()

    def set_user_pin(self, card: Card, new_pin: bytes, old_pin: bytes | None = None) -> None:
        """InitPIN (SO logged in) or SetPIN: re-wrap only the data key, and clear the user's counter.

        A server-checked PIN changes on the server too (SetPIN only: the change needs the old PIN)."""
        card.policy.pin.check(new_pin)
        if _server_checked(card.record) and old_pin is None:
            raise CKRError(C.CKR_FUNCTION_NOT_SUPPORTED, "this card's PIN is checked by its server: change it there")
        if card.data_key is None:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in first")
        if _server_checked(card.record) and old_pin is not None:
            self._change_online_pin(card, old_pin, new_pin)
            return
        self._rewrap(card, "user", card.data_key, new_pin)

    def _online(self) -> OnlinePinCheck:
        if self.online is None:
            raise CKRError(C.CKR_DEVICE_ERROR, "the card's PIN is checked by its server: no server link here")
        return self.online

    def _online_secret(self, rec: CardRecord, pin: bytes) -> bytes:
        """A server-checked PIN's extra key layer, from the card's server. A renewal flag in the answer is
        recorded on the card, never acted on here: keys do not change under an application mid-session."""
        answer = self._online().check(rec, pin, self.device_key)
        if answer.renew != bool((rec.server or {}).get("renew_requested")):
            self.mark_renewal(rec.id, answer.renew)
        return answer.secret

    def _change_online_pin(self, card: Card, old_pin: bytes, new_pin: bytes) -> None:
        """SetPIN on a server-checked card (the old PIN was verified, so card.data_key is set): the server
        takes the new PIN, the data key is re-wrapped under it, and a check with the new PIN confirms the
        change on the server, which accepts both until then (a crash in between leaves a card that opens
        with the PIN its store is wrapped under)."""
        secret = self._online().change(card.record, old_pin, new_pin, self.device_key)
        self.bind_server_secret(card, new_pin, secret)
        with self.store.transaction() as db:
            self.store.update_card(db, card.slot_id, user_failures=0, user_blocked_until=0.0)
        self.refresh(force=True)
        self._online_secret(self.cards[card.slot_id].record, new_pin)

    def set_so_pin(self, card: Card, new_pin: bytes) -> None:
        card.policy.pin.check(new_pin, so=True)
        if card.data_key is None:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in first")
        self._rewrap(card, "so", card.data_key, new_pin)

    def _rewrap(self, card: Card, role: str, data_key: bytes, new_pin: bytes) -> None:
        """Wrap the data key under a new PIN for one role and clear that role's wrong-try counter."""
        salt = os.urandom(16)
        secret_input = card.policy.pin.kdf_input(new_pin)
        wrapped = self._wrap(data_key, secret_input, salt, keywrap.KdfParams(**card.record.kdf), card.serial, role)
        fields = {f"{role}_salt": salt, f"{role}_wrapped": wrapped, f"{role}_failures": 0, f"{role}_blocked_until": 0.0}
        with self.store.transaction() as db:
            self.store.update_card(db, card.slot_id, **fields)
        self.refresh(force=True)

    def reinitialize(self, card: Card, so_pin: bytes, label: str) -> None:
        """C_InitToken on an existing card: SO PIN checked, every object destroyed, user PIN unset; the card
        keeps its policy (a strict card never becomes compatible, nor the reverse)."""
        self.verify_pin(card, True, so_pin)
        data_key = os.urandom(keywrap.KEY_SIZE)
        salt = os.urandom(16)
        secret_input = card.policy.pin.kdf_input(so_pin)
        wrapped = self._wrap(data_key, secret_input, salt, keywrap.KdfParams(**card.record.kdf), card.serial, "so")
        with self.lock:
            with self.store.transaction() as db:
                db.execute("DELETE FROM objects WHERE card_id = ?", (card.slot_id,))
                self.store.update_card(
                    db,
                    card.slot_id,
                    label=label,
                    created=time.time(),  # a new generation: other processes drop the old data key
                    so_salt=salt,
                    so_wrapped=wrapped,
                    user_salt=None,
                    user_wrapped=None,
                    user_failures=0,
                    user_blocked_until=0.0,
                )
            card.forget_secrets()
            card.session_objects.clear()
            self.refresh(force=True)

    # --- objects ------------------------------------------------------------------------------

    def add_object(
        self, card: Card, attrs: dict[int, bytes], material: bytes | None, token: bool, owner: int
    ) -> TokenObject:
        """Store a new object, settled by the card's policy; key material is sealed under the card's data key
        (so login is needed), or, for a key a compatible card lets be public, under its public-object key."""
        attrs = card.policy.settle(attrs)
        _check_trusted(card, attrs)
        uid = os.urandom(16)
        attrs[C.CKA_UNIQUE_ID] = uid.hex().encode()
        with self.lock:
            if not token:
                self._session_handles += 1
                obj = TokenObject(self._session_handles, uid, attrs, material=material, owner=owner)
                card.session_objects[obj.handle] = obj
                return obj
            generation = card.record.created
            secret, under_data_key = self._seal(card, attrs, material, uid)
            with self.store.transaction() as db:
                self._check_generation(db, card, generation, under_data_key)
                handle = self.store.insert_object(db, card.slot_id, uid, attrs, secret)
            obj = TokenObject(handle, uid, attrs, secret=secret)
            card.objects[handle] = obj
            return obj

    def add_objects(
        self, card: Card, items: list[tuple[dict[int, bytes], bytes | None]], token: bool, owner: int
    ) -> list[TokenObject]:
        """Several objects in one transaction (a key pair is stored whole or not at all)."""
        if not token:
            return [self.add_object(card, attrs, material, False, owner) for attrs, material in items]
        items = [(card.policy.settle(attrs), material) for attrs, material in items]
        for attrs, _ in items:
            _check_trusted(card, attrs)
        with self.lock:
            prepared = []
            generation = card.record.created
            under_data_key = False
            for attrs, material in items:
                uid = os.urandom(16)
                attrs[C.CKA_UNIQUE_ID] = uid.hex().encode()
                secret, by_data_key = self._seal(card, attrs, material, uid)
                under_data_key |= by_data_key
                prepared.append((uid, attrs, secret))
            out = []
            with self.store.transaction() as db:
                self._check_generation(db, card, generation, under_data_key)
                for uid, attrs, secret in prepared:
                    handle = self.store.insert_object(db, card.slot_id, uid, attrs, secret)
                    out.append(TokenObject(handle, uid, attrs, secret=secret))
            for obj in out:
                card.objects[obj.handle] = obj
            return out

    def _seal(
        self, card: Card, attrs: dict[int, bytes], material: bytes | None, uid: bytes
    ) -> tuple[bytes | None, bool]:
        """A token object's sealed material, and whether the data key sealed it (else the public-object key)."""
        if material is None:
            return None, False
        if _public_sealed(card, A.get_bool(attrs, C.CKA_PRIVATE)):
            return keywrap.seal(self.public_object_key(card), material, uid), False
        if card.data_key is None:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "storing key material needs the user to log in")
        return keywrap.seal(card.data_key, material, uid), True

    def public_object_key(self, card: Card) -> bytes:
        """The key that seals a compatible card's CKA_PRIVATE=false keys: derived from the device key and the
        card's serial (HKDF-SHA256), so such a key is usable without login yet still encrypted at rest, and
        a store copied to another machine does not open. Strict cards have none: nothing of theirs is
        sealed without the data key, which only a PIN unwraps."""
        if not card.policy.public_keys:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in to use this key")
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        info = f"vsc-card:{card.serial}:public-objects".encode()
        return HKDF(hashes.SHA256(), keywrap.KEY_SIZE, salt=None, info=info).derive(self.device_key)

    def _check_generation(self, db: Any, card: Card, generation: float, sealed: bool) -> None:
        """Inside a write: the card still exists and, if we sealed material, under its current data key."""
        rec = self.store.card(db, card.slot_id)
        if rec is None:
            raise CKRError(C.CKR_TOKEN_NOT_PRESENT, "the card was deleted")
        if sealed and rec.created != generation:
            card.forget_secrets()
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "the card was re-initialised by another process: log in again")

    def update_attrs(self, card: Card, obj: TokenObject, attrs: dict[int, bytes]) -> None:
        _check_trusted(card, attrs)
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

    # --- key material -------------------------------------------------------------------------

    def material(self, card: Card, obj: TokenObject) -> bytes:
        if obj.material is not None:
            return obj.material
        if obj.secret is None:
            raise CKRError(C.CKR_KEY_HANDLE_INVALID, "object holds no key material")
        key = self.public_object_key(card) if _public_sealed(card, obj.private) else card.data_key
        if key is None:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in to use this key")
        plain = keywrap.unseal(key, obj.secret, obj.uid)
        if plain is None:
            raise CKRError(C.CKR_DEVICE_ERROR, "key material does not decrypt: the store is damaged")
        return plain

    def crypto_key(self, card: Card, obj: TokenObject) -> Any:
        """The `cryptography` key (or secret bytes) behind an object, loaded once per login."""
        key = card.keys.get(obj.handle)
        if key is not None:
            return key
        from cryptography.hazmat.primitives import serialization

        if obj.key_type in DSA_DH_KEY_TYPES:
            from vsc_provider.token import dsa_dh  # noqa: F401 - quiets `cryptography`'s FFDH warning
        if obj.klass == C.CKO_PRIVATE_KEY:
            key = serialization.load_der_private_key(self.material(card, obj), password=None)
        elif obj.klass == C.CKO_SECRET_KEY:
            key = self.material(card, obj)
        elif obj.klass in (C.CKO_PUBLIC_KEY, C.CKO_CERTIFICATE):
            info = obj.attrs.get(C.CKA_PUBLIC_KEY_INFO)
            if not info:
                raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "object has no public key")
            key = serialization.load_der_public_key(info)
        else:
            raise CKRError(C.CKR_KEY_HANDLE_INVALID, "object is not a key")
        card.keys[obj.handle] = key
        return key
