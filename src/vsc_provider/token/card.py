"""A card as one process sees it: its store record and policy, its objects, and (after login) its data key,
loaded keys and prepared signers; and what a card record says about the card."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.objects import TokenObject
from vsc_provider.token.policy import CardPolicy
from vsc_provider.token.store import CardRecord, ObjectRecord

SESSION_OBJECT_BASE = 0x40000000
PROFILE_OBJECT_BASE = 0x20000000
PREPARED_MAX = 256  # prepared signers kept per card


def server_checked(rec: CardRecord) -> bool:
    """A card whose user PIN its server checks too (the data key has a server-held layer)."""
    return bool(rec.server) and (rec.server or {}).get("pin_check") == "server"


def activating(rec: CardRecord) -> bool:
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

    def keep_signer(self, handle: int, mech: Any, signer: Any, obj: TokenObject) -> None:
        """Keep a prepared signer for the next use of this key and mechanism, checked against OBJ."""
        if len(self.signers) >= PREPARED_MAX:  # callers choose the parameters (PSS salt lengths...): bound it
            self.signers.clear()
        self.signers[handle, mech] = (signer, obj, obj.attrs, obj.bool(C.CKA_ALWAYS_AUTHENTICATE))

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

    def merge(self, records: list[ObjectRecord]) -> None:
        """Install the objects as read from the store, keeping this process's TokenObject for each one that
        still exists (so loaded keys and handles stay valid)."""
        old = self._objects or {}
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
        self.objects = fresh
        for handle in list(self.keys):
            if handle not in fresh and handle not in self.session_objects:
                del self.keys[handle]

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


def public_sealed(card: Card, private: bool) -> bool:
    """Whether an object's key material is sealed under the public-object key rather than the data key: a
    key with CKA_PRIVATE false, which only a compatible card has (CKA_PRIVATE never changes after creation)."""
    return not private and card.policy.public_keys


def check_trusted(card: Card, attrs: dict[int, bytes]) -> None:
    """CKA_TRUSTED marks a key that may wrap CKA_WRAP_WITH_TRUSTED keys: only the SO may set it."""
    if A.get_bool(attrs, C.CKA_TRUSTED) and not card.so:
        raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, "only the security officer can set CKA_TRUSTED")
