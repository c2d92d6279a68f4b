"""The token engine: the cards of one store as this process sees them, with login state and loaded keys.

One Engine per process. It re-reads the store only when another process has committed: `poll()` (one
memory read of the store's change signal, at the start of every PKCS#11 call that uses a session) and then
PRAGMA data_version tell it so. Signing after login touches neither the store nor the KDF: keys are unsealed
once and kept in memory until logout, finalize or the last session closing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from vsc_provider import config
from vsc_provider import log as vlog
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import audit, audit_writer, card_layer, keywrap, login, sealed_pin, sealing
from vsc_provider.token import binding as binding_mac
from vsc_provider.token.card import PROFILE_OBJECT_BASE, SESSION_OBJECT_BASE, Card, activating, server_checked
from vsc_provider.token.device_key import load_device_key
from vsc_provider.token.object_attrs import profile_attrs
from vsc_provider.token.object_store import ObjectStore
from vsc_provider.token.objects import TokenObject
from vsc_provider.token.online import OnlinePinCheck
from vsc_provider.token.pin import PinPolicy
from vsc_provider.token.policy import STRICT, CardPolicy
from vsc_provider.token.store import MACED_SCHEMA, SIGNAL_VALUE, CardRecord, Store

# Card and the device key moved to their own modules; their names stay importable from here.
__all__ = ["PROFILE_OBJECT_BASE", "SESSION_OBJECT_BASE", "Card", "Engine", "load_device_key"]

# Random bytes come from os.urandom (what `secrets` uses) without importing `secrets`, whose hmac and
# OpenSSL hashlib imports would add to every host's C_Initialize.

log = vlog.get("vsc.token")


def _schema(value: str | None) -> int:
    """The store's schema version from its meta row. Only a number below MACED_SCHEMA marks an old store: a
    missing or unreadable row counts as current (Store() writes the row when it is missing)."""
    try:
        return int(value or MACED_SCHEMA)
    except ValueError:
        return MACED_SCHEMA


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
        # Called before every PIN check: the CLI and the agent refuse there to unlock under a debugger
        # (vsc_provider/tamper.py); a PKCS#11 host's engine has none.
        self.unlock_guard: Callable[[], None] | None = None
        self.cards: dict[int, Card] = {}
        self.hidden: dict[int, CardRecord] = {}  # cards another process is still activating
        self._activating: set[int] = set()  # cards this process is activating
        self.lock = threading.RLock()
        self._version = -1
        self.object_store = ObjectStore(self.store, self.device_key, self.lock)
        self.audit = audit_writer.AuditLog(self.store, self.device_key)
        self.signal = self.store.signal.map
        self.signal_seen = self.signal[SIGNAL_VALUE]
        self._mac_legacy_bindings()
        self.refresh(force=True)

    def _mac_legacy_bindings(self) -> None:
        """A store from before binding MACs (schema version below MACED_SCHEMA) gets its bindings MACed once,
        and its schema version raised in the same transaction; from then on a binding without a MAC is as
        refused as an edited one. A start reads one meta row and, once done, writes nothing."""
        if _schema(self.store.read_meta("schema_version")) >= MACED_SCHEMA:
            return
        ids = [r.id for r in self.store.load()[0]]
        with self.store.transaction() as db:
            if _schema(self.store.meta(db, "schema_version")) >= MACED_SCHEMA:
                return  # another process did it first
            # A store of the first MAC-ing versions says so in a meta row: its bindings all carry a MAC
            # already, and one without is an edited one (refused), not an old one.
            legacy = not self.store.delete_meta(db, binding_mac.META_KEY)
            for rec in filter(None, (self.store.card(db, card_id) for card_id in ids)) if legacy else ():
                if rec.server and binding_mac.MAC_FIELD not in rec.server:
                    self.store.update_card(
                        db, rec.id, server=binding_mac.sealed(self.device_key, rec.serial, rec.server)
                    )
            self.store.set_meta(db, "schema_version", str(MACED_SCHEMA))

    # --- reading the store --------------------------------------------------------------------

    def poll(self) -> None:
        """Reload if any process committed since the last look (this one included: then nothing is read).
        C_SignInit's prepared path inlines the test: `engine.signal[SIGNAL_VALUE] != engine.signal_seen`."""
        current = self.signal[SIGNAL_VALUE]
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
                if rec.server:
                    rec = rec._replace(server=binding_mac.checked(self.device_key, rec.serial, rec.server))
                if activating(rec) and rec.id not in self._activating:
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
                    card.merge(objects.get(rec.id, []))
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
            card.merge(self.store.objects(card.slot_id))
            return card.objects

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
        device_key: str = "file",
    ) -> Card:
        """A new card. `policy` is its CardPolicy for good (a PinPolicy alone: a strict card with those PIN
        rules); cards are made only here (C_InitToken re-initialises a card and keeps its policy).
        `device_key` names the back end of its device-key layer (token/card_layer.py), also for good."""
        if not isinstance(policy, CardPolicy):
            policy = CardPolicy.named(STRICT, policy)
        kdf = kdf or keywrap.KdfParams()
        policy.pin.check(so_pin, so=True)
        if user_pin is not None:
            policy.pin.check(user_pin)
        if not label or len(label.encode()) > 32:
            raise CKRError(C.CKR_ARGUMENTS_BAD, "a card label has 1 to 32 bytes")
        serial = os.urandom(8).hex().upper()
        layer_info = card_layer.create(device_key, serial)
        with self.lock:
            try:
                rec = self._insert_card(label, so_pin, user_pin, policy, kdf, server, serial, layer_info)
            except BaseException:
                card_layer.forget(layer_info)
                raise
            if activating(rec):
                self._activating.add(rec.id)
            self.refresh(force=True)
            return self.cards[rec.id]

    def _insert_card(
        self,
        label: str,
        so_pin: bytes,
        user_pin: bytes | None,
        policy: CardPolicy,
        kdf: keywrap.KdfParams,
        server: dict[str, Any] | None,
        serial: str,
        layer_info: dict[str, Any] | None,
    ) -> CardRecord:
        """The new card's record, wrapped and committed."""
        layer = card_layer.layer_key(self.device_key, serial, layer_info)
        data_key = os.urandom(keywrap.KEY_SIZE)
        so_salt = os.urandom(16)
        so_wrapped = login.wrap(layer, data_key, policy.pin.kdf_input(so_pin), so_salt, kdf, serial, "so")
        user_salt = user_wrapped = None
        if user_pin is not None:
            user_salt = os.urandom(16)
            user_wrapped = login.wrap(layer, data_key, policy.pin.kdf_input(user_pin), user_salt, kdf, serial, "user")
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
            server=None if server is None else binding_mac.sealed(self.device_key, serial, server),
            device_key=layer_info,
        )
        with self.store.transaction() as db:
            return rec._replace(id=self.store.insert_card(db, rec))

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
                rec = self.store.card(db, slot_id)
                self.store.delete_card(db, slot_id)
            self.refresh(force=True)
        if rec is not None:
            card_layer.forget(rec.device_key)

    def layer_key(self, card: Card) -> bytes:
        """The key of the card's device-key layer, from its back end (the TPM or keyring is asked each time)."""
        return card_layer.layer_key(self.device_key, card.serial, card.record.device_key)

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
        fields = login.wrapped_fields(self.layer_key(card), card, "user", card.data_key, pin, server_secret=secret)
        with self.store.transaction() as db:
            binding = {} if server is None else {"server": binding_mac.sealed(self.device_key, card.serial, server)}
            self.store.update_card(db, card.slot_id, **fields, **binding)
        self.refresh(force=True)

    def set_binding(self, slot_id: int, binding: dict[str, Any]) -> None:
        """Store a card's server binding (the provisioning state: server, device, keys it knows)."""
        self.edit_binding(slot_id, lambda _: binding)

    def edit_binding(self, slot_id: int, edit: Callable[[dict[str, Any]], dict[str, Any] | None]) -> bool:
        """Change a card's binding in one write transaction: `edit` gets the stored binding ({} for none)
        and returns the new one, or None to leave it. False when the card is gone or nothing changed."""
        with self.store.transaction() as db:
            rec = self.store.card(db, slot_id)
            current = None if rec is None else binding_mac.checked(self.device_key, rec.serial, rec.server)
            new = None if rec is None else edit(dict(current or {}))
            if new is not None and rec is not None:
                self.store.update_card(db, slot_id, server=binding_mac.sealed(self.device_key, rec.serial, new))
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
        """Check a PIN against the store's counters and return the card's data key (see login.unlock)."""
        if self.unlock_guard is not None:
            self.unlock_guard()
        server_secret = None
        role = "so" if so else "user"
        try:
            if not so and card.policy.pin.may_be(pin, so=False) and server_checked(card.record):
                server_secret = self._online_secret(card.record, pin)  # raises on a refused PIN
            layer = self.layer_key(card)
            data_key = login.unlock(self.store, layer, card, so, pin, server_secret, lambda: self.refresh(force=True))
        except CKRError as exc:
            self.audit.event(card.slot_id, f"login-{role}", exc.rv)
            if isinstance(exc, login.PinBlocked):
                self.audit.event(card.slot_id, f"block-{role}", C.CKR_OK)
            raise
        self.audit.event(card.slot_id, f"login-{role}")
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
        """End the card's login in this process (C_Logout, its last session closing, the end of a `vsc`
        command); the end of a login is an audit entry, a logout of nobody is not."""
        with self.lock:
            role = "so" if card.so else "user" if card.user else None
            card.forget_secrets()
        if role is not None:
            self.audit.event(card.slot_id, f"logout-{role}")

    def set_user_pin(self, card: Card, new_pin: bytes, old_pin: bytes | None = None, reset: bool = False) -> None:
        """InitPIN (SO logged in) or SetPIN: re-wrap only the data key, and clear the user's counter. `reset`:
        an administrator's reset without an SO login (the minidriver's admin challenge-response).

        A server-checked PIN changes on the server too (SetPIN only: the change needs the old PIN)."""
        card.policy.pin.check(new_pin)
        if server_checked(card.record) and old_pin is None:
            raise CKRError(C.CKR_FUNCTION_NOT_SUPPORTED, "this card's PIN is checked by its server: change it there")
        if card.data_key is None:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in first")
        if server_checked(card.record) and old_pin is not None:
            self._change_online_pin(card, old_pin, new_pin)
            return
        self._rewrap(card, "user", card.data_key, new_pin, reset)

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
        self.audit.event(card.slot_id, "pin-change-user")
        with self.store.transaction() as db:
            self.store.update_card(db, card.slot_id, user_failures=0, user_blocked_until=0.0)
            forgot = sealed_pin.forget(db, card)
        self.refresh(force=True)
        if forgot:
            self._sealed_pin_forgotten(card)
        self._online_secret(self.cards[card.slot_id].record, new_pin)

    @staticmethod
    def _sealed_pin_forgotten(card: Card) -> None:
        log.info("card %s: the user PIN changed; the PIN sealed for fingerprint approval is forgotten", card.serial)

    def unblock_user(self, card: Card, so_pin: bytes) -> None:
        """Clear the user PIN's wrong-try counter and wait with the SO PIN's authority (checked and counted
        like an SO login); the user PIN stays as it was. How a card's server unblocks it."""
        self.verify_pin(card, True, so_pin)
        with self.store.transaction() as db:
            self.store.update_card(db, card.slot_id, user_failures=0, user_blocked_until=0.0)
        self.refresh(force=True)
        self.audit.event(card.slot_id, "unblock-user")

    def set_so_pin(self, card: Card, new_pin: bytes) -> None:
        card.policy.pin.check(new_pin, so=True)
        if card.data_key is None:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in first")
        self._rewrap(card, "so", card.data_key, new_pin)

    def _rewrap(self, card: Card, role: str, data_key: bytes, new_pin: bytes, reset: bool = False) -> None:
        """Wrap the data key under a new PIN for one role and clear that role's wrong-try counter."""
        fields = login.wrapped_fields(self.layer_key(card), card, role, data_key, new_pin)
        fields.update({f"{role}_failures": 0, f"{role}_blocked_until": 0.0})
        with self.store.transaction() as db:
            self.store.update_card(db, card.slot_id, **fields)
            forgot = role == "user" and sealed_pin.forget(db, card)
        self.refresh(force=True)
        if forgot:
            self._sealed_pin_forgotten(card)
        # The SO setting the user's PIN (C_InitPIN), or an admin's reset, also unblocks it: told apart from a change.
        kind = "reset" if role == "user" and (card.so or reset) else "change"
        self.audit.event(card.slot_id, f"pin-{kind}-{role}")

    def reinitialize(self, card: Card, so_pin: bytes, label: str) -> None:
        """C_InitToken on an existing card: SO PIN checked, every object destroyed, user PIN unset; the card
        keeps its policy (a strict card never becomes compatible, nor the reverse)."""
        self.verify_pin(card, True, so_pin)
        data_key = os.urandom(keywrap.KEY_SIZE)
        wrapped = login.wrapped_fields(self.layer_key(card), card, "so", data_key, so_pin)
        with self.lock:
            with self.store.transaction() as db:
                self.store.delete_objects(db, card.slot_id)
                self.store.update_card(
                    db,
                    card.slot_id,
                    label=label,
                    created=time.time(),  # a new generation: other processes drop the old data key
                    **wrapped,
                    user_salt=None,
                    user_wrapped=None,
                    user_failures=0,
                    user_blocked_until=0.0,
                )
            card.forget_secrets()
            card.session_objects.clear()
            self.refresh(force=True)
        self.audit.event(card.slot_id, "init-token")  # the log stays: it is the card's, not its objects'

    # --- objects and key material (token/object_store.py, token/sealing.py) -----------------------

    def add_object(
        self, card: Card, attrs: dict[int, bytes], material: bytes | None, token: bool, owner: int
    ) -> TokenObject:
        return self.object_store.add(card, attrs, material, token, owner)

    def add_objects(
        self,
        card: Card,
        items: list[tuple[dict[int, bytes], bytes | None]],
        token: bool,
        owner: int,
        check: Callable[[list[dict[int, bytes]]], None] | None = None,
    ) -> list[TokenObject]:
        """Several objects in one transaction (a key pair is stored whole or not at all); for token objects,
        `check` sees the card's committed objects inside it (ObjectStore.add_many)."""
        if not token:
            return [self.object_store.add(card, attrs, material, False, owner) for attrs, material in items]
        return self.object_store.add_many(card, items, check=check)

    def update_attrs(self, card: Card, obj: TokenObject, attrs: dict[int, bytes]) -> None:
        self.object_store.update_attrs(card, obj, attrs)

    def destroy(self, card: Card, obj: TokenObject) -> None:
        self.object_store.destroy(card, obj)

    def drop_session_objects(self, card: Card, owner: int) -> None:
        self.object_store.drop_session_objects(card, owner)

    def public_object_key(self, card: Card) -> bytes:
        return sealing.public_object_key(self.device_key, card)

    def material(self, card: Card, obj: TokenObject) -> bytes:
        return sealing.material(self.device_key, card, obj)

    # --- key uses, each an audit entry (token/audit.py) ----------------------------------------------

    def signer(self, card: Card, obj: TokenObject, mech: Mechanism) -> Any:
        """The key's prepared signer for a mechanism; each signature it makes is recorded."""
        from vsc_provider.token import audited_ops, crypto  # loaded at the first operation

        inner = crypto.make_signer(mech, self.crypto_key(card, obj))
        return audited_ops.AuditedSigner(inner, self.audit.use, self.audit_who(card, obj, audit.SIGN, mech.type))

    def decryptor(self, card: Card, obj: TokenObject, mech: Mechanism, kind: str = audit.DECRYPT) -> Any:
        """A decryption (or, with kind UNWRAP, an unwrap) by the key; each use is recorded."""
        from vsc_provider.token import audited_ops, crypto

        inner = crypto.make_decryptor(mech, self.crypto_key(card, obj))
        return audited_ops.AuditedCipherer(inner, self.audit.use, self.audit_who(card, obj, kind, mech.type))

    def audited_call(
        self, card: Card, obj: TokenObject, kind: str, mech_type: int, fn: Callable[[bytes], bytes]
    ) -> Callable[[bytes], bytes]:
        """A one-shot operation by the key (C_SignRecover's), recorded at each call."""
        from vsc_provider.token import audited_ops

        return audited_ops.audited_call(fn, self.audit.use, self.audit_who(card, obj, kind, mech_type))

    def key_used(self, card: Card, obj: TokenObject, kind: str, mech_type: int | None, rv: int = C.CKR_OK) -> None:
        """Record a use done elsewhere (a derivation, an OTP code)."""
        self.audit.use(self.audit_who(card, obj, kind, mech_type), rv)

    @staticmethod
    def audit_who(card: Card, obj: TokenObject, kind: str, mech_type: int | None) -> audit.Who:
        label = obj.attrs.get(C.CKA_LABEL, b"").decode("utf-8", "replace")
        return audit.Who(card.slot_id, kind, obj.attrs.get(C.CKA_ID, b"").hex(), label, mech_type)

    def crypto_key(self, card: Card, obj: TokenObject) -> Any:
        """The `cryptography` key (or secret bytes) behind an object, loaded once per login."""
        return sealing.crypto_key(self.device_key, card, obj)
