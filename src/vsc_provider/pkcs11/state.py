"""Library state: initialisation, the engine, and the open sessions with their active operations."""

from __future__ import annotations

import os
import threading
from typing import Any, NamedTuple

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import BufferTooSmall, CKRError
from vsc_provider.token import mechanisms
from vsc_provider.token.engine import Card, Engine
from vsc_provider.token.objects import TokenObject


class Operation:
    """An active crypto operation in a session; `result` caches output across a length query."""

    __slots__ = ("authed", "length", "multipart", "needs_auth", "obj", "result", "worker")

    def __init__(self, worker: Any, obj: TokenObject | None = None, needs_auth: bool = False, length: int = 0) -> None:
        self.worker = worker
        self.obj = obj
        self.result: bytes | None = None
        self.multipart = False
        self.needs_auth = needs_auth
        self.authed = False
        self.length = length


class Session:
    __slots__ = (
        "card",
        "decrypt",
        "digest",
        "encrypt",
        "find",
        "handle",
        "rw",
        "sign",
        "sign_recover",
        "verify",
        "verify_recover",
    )

    def __init__(self, handle: int, card: Card, rw: bool) -> None:
        self.handle = handle
        self.card = card
        self.rw = rw
        self.find: list[int] | None = None
        self.sign: Operation | None = None
        self.verify: Operation | None = None
        self.encrypt: Operation | None = None
        self.decrypt: Operation | None = None
        self.digest: Operation | None = None
        self.sign_recover: Operation | None = None
        self.verify_recover: Operation | None = None

    def state(self) -> int:
        card = self.card
        if card.so:
            return C.CKS_RW_SO_FUNCTIONS
        if card.user:
            return C.CKS_RW_USER_FUNCTIONS if self.rw else C.CKS_RO_USER_FUNCTIONS
        return C.CKS_RW_PUBLIC_SESSION if self.rw else C.CKS_RO_PUBLIC_SESSION


class InitArgs(NamedTuple):
    flags: int
    mutex_functions: tuple[bool, bool, bool, bool]
    reserved: bool


class Library:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.engine: Engine | None = None
        self.forked = False  # set in a forked child until it initialises again
        self.sessions: dict[int, Session] = {}
        self.next_handle = 0
        self.finalized = threading.Event()
        self.seen_slots: frozenset[int] = frozenset()
        # Engines left behind by fork(): never closed in the child, whose store handle is the parent's.
        self.abandoned: list[Engine] = []
        self._fork_held: list[Any] = []

    def before_fork(self) -> None:
        """Hold every lock that guards the store, so no other thread is inside SQLite when fork() copies
        the process (its mutexes would stay locked forever in the child). Waiting releases the GIL."""
        held: list[Any] = [self.lock]
        self.lock.acquire()
        engine = self.engine
        if engine is not None:
            engine.lock.acquire()
            held.append(engine.lock)
            engine.store.lock.acquire()
            held.append(engine.store.lock)
        self._fork_held = held

    def after_fork(self) -> None:
        held, self._fork_held = self._fork_held, []
        for lock in reversed(held):
            lock.release()

    def after_fork_in_child(self) -> None:
        """The child must initialise again (a flag, so that no call pays for getpid())."""
        self.forked = True
        self.after_fork()

    def require(self) -> Engine:
        engine = self.engine
        if engine is None or self.forked:
            raise CKRError(C.CKR_CRYPTOKI_NOT_INITIALIZED)
        return engine

    def session(self, handle: int) -> Session:
        """The session, after taking in what other processes committed since the last call."""
        s = self.sessions.get(handle)
        engine = self.engine
        if s is None or engine is None:
            self.require()
            raise CKRError(C.CKR_SESSION_HANDLE_INVALID, f"no session {handle}")
        engine.poll()  # take in what other processes committed
        if s.card.slot_id not in engine.cards:
            raise CKRError(C.CKR_DEVICE_REMOVED, "the card was deleted")
        return s

    def card_sessions(self, card: Card) -> list[Session]:
        return [s for s in self.sessions.values() if s.card is card]


LIB = Library()
os.register_at_fork(before=LIB.before_fork, after_in_parent=LIB.after_fork, after_in_child=LIB.after_fork_in_child)


def deliver(session: Session, attr: str, op: Operation, compute: Any, query: bool, capacity: int) -> bytes:
    """Run an operation's final step once, honouring the length query and short-buffer conventions.

    The result is computed at most once: a NULL-buffer query or a short buffer keeps it for the next call
    (`compute` is not called when the operation already holds a result).
    Any other error ends the operation, as the standard says (unexpected exceptions included: the entry
    point answers CKR_GENERAL_ERROR for them, and the session must not stay stuck in the operation).
    """
    out = op.result
    if out is None:
        try:
            out = op.result = compute()
        except Exception:
            setattr(session, attr, None)
            raise
    if query:
        return out
    require_room(len(out), capacity)
    setattr(session, attr, None)
    return out


def require_room(needed: int, capacity: int) -> None:
    """The short-buffer half of the length convention: CKR_BUFFER_TOO_SMALL, telling the length needed."""
    if capacity < needed:
        raise BufferTooSmall(needed)


def feed(session: Session, attr: str, op: Operation, part: bytes) -> Any:
    """Hand one part to a multi-part operation (C_*Update). A part that fails ends the operation, as the
    standard says, like any error but a short buffer."""
    op.multipart = True
    try:
        return op.worker.update(part)
    except Exception:
        setattr(session, attr, None)
        raise


def find_object(session: Session, handle: int, invalid: int = C.CKR_OBJECT_HANDLE_INVALID) -> TokenObject:
    card = session.card
    obj = card.get(handle)
    if obj is None:
        LIB.require().refresh()
        obj = card.get(handle)
    if obj is None or not card.visible(obj):
        raise CKRError(invalid, f"no object {handle} visible in this session")
    return obj


_USAGE_NAMES = {
    C.CKA_SIGN: "CKA_SIGN",
    C.CKA_VERIFY: "CKA_VERIFY",
    C.CKA_ENCRYPT: "CKA_ENCRYPT",
    C.CKA_DECRYPT: "CKA_DECRYPT",
}


def check_allowed(obj: TokenObject, mech_type: int) -> None:
    """CKA_ALLOWED_MECHANISMS, when the key has a non-empty list: the mechanism must be on it."""
    raw = obj.attrs.get(C.CKA_ALLOWED_MECHANISMS)
    if raw and mech_type not in A.decode(C.CKA_ALLOWED_MECHANISMS, raw):  # type: ignore[operator]
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech_type:x} is not in the key's CKA_ALLOWED_MECHANISMS")


def operation_key(
    session: Session, attr: str, mech_type: int, handle: int, classes: tuple[int, ...], usage: int, what: str
) -> TokenObject:
    """The checks every C_xInit shares: no operation active, a known mechanism, a visible key of the
    right class whose usage attribute allows it."""
    if getattr(session, attr) is not None:
        raise CKRError(C.CKR_OPERATION_ACTIVE)
    if mech_type not in mechanisms.MECHANISMS:
        session.card.policy.check_mechanism(mech_type)  # DSA on compatible cards
    obj = find_object(session, handle, C.CKR_KEY_HANDLE_INVALID)
    if obj.klass not in classes:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, f"{what} needs another class of key")
    if not obj.bool(usage):
        raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, f"key has {_USAGE_NAMES.get(usage, hex(usage))} false")
    check_allowed(obj, mech_type)
    return obj


def active_operation(h: int, attr: str) -> tuple[Session, Operation]:
    """The session and its operation of that kind (`attr`: "decrypt", "sign_recover", ...). A key that needs
    a context-specific login per use and has none ends the operation."""
    s = LIB.session(h)
    op = getattr(s, attr)
    if op is None:
        raise CKRError(C.CKR_OPERATION_NOT_INITIALIZED)
    if op.needs_auth and not op.authed:
        setattr(s, attr, None)
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "this key needs C_Login(CKU_CONTEXT_SPECIFIC) for each use")
    return s, op


def writable(session: Session, token: bool, private: bool) -> None:
    """Access rules for creating, changing or destroying an object."""
    if token and not session.rw:
        raise CKRError(C.CKR_SESSION_READ_ONLY, "token objects need a read/write session")
    if private and not session.card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "private objects need the user to log in")


def add_new_key(session: Session, attrs: dict[int, bytes], material: Any) -> int:
    """Store a key a call made (derived, unwrapped, decapsulated) under the card's policy, with the access
    rules of its session; returns its handle (a session object belongs to this session)."""
    attrs = session.card.policy.settle(attrs)
    token = A.get_bool(attrs, C.CKA_TOKEN)
    writable(session, token, A.get_bool(attrs, C.CKA_PRIVATE))
    return LIB.require().add_object(session.card, attrs, material, token, 0 if token else session.handle).handle
