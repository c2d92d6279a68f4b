"""C_OpenSession, C_CloseSession, C_CloseAllSessions, C_GetSessionInfo, C_Login and C_Logout.

Login state belongs to the card within this process (the standard's "application"), shared by all of its
sessions; closing the last session of a card logs out and drops its keys from memory.
"""

from __future__ import annotations

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.pkcs11.state import LIB, Session
from vsc_provider.token.engine import Card


def open_session(slot_id: int, flags: int) -> int:
    engine = LIB.require()
    if not flags & C.CKF_SERIAL_SESSION:
        raise CKRError(C.CKR_SESSION_PARALLEL_NOT_SUPPORTED)
    with LIB.lock:
        engine.refresh()
        card = engine.card(slot_id)
        rw = bool(flags & C.CKF_RW_SESSION)
        if card.so and not rw:
            raise CKRError(C.CKR_SESSION_READ_WRITE_SO_EXISTS)
        LIB.next_handle += 1
        handle = LIB.next_handle
        LIB.sessions[handle] = Session(handle, card, rw)
        return handle


def _close(s: Session) -> None:
    engine = LIB.require()
    del LIB.sessions[s.handle]
    engine.drop_session_objects(s.card, s.handle)
    if not LIB.card_sessions(s.card):
        engine.logout(s.card)


def close_session(h: int) -> None:
    with LIB.lock:
        # Not LIB.session(): a session whose card was deleted must still close (and drop its objects).
        s = LIB.sessions.get(h)
        _close(s if s is not None else LIB.session(h))


def close_all_sessions(slot_id: int) -> None:
    engine = LIB.require()
    with LIB.lock:
        gone = [s for s in LIB.sessions.values() if s.card.slot_id == slot_id]
        if not gone:
            engine.card(slot_id)  # CKR_SLOT_ID_INVALID for a slot that never had a card
        for s in gone:
            _close(s)


def get_session_info(h: int) -> tuple[int, int, int]:
    s = LIB.session(h)
    return s.card.slot_id, s.state(), C.CKF_SERIAL_SESSION | (C.CKF_RW_SESSION if s.rw else 0)


def login(h: int, user_type: int, pin: bytes | None) -> None:
    s = LIB.session(h)
    engine = LIB.require()
    card = s.card
    if pin is None:
        raise CKRError(C.CKR_ARGUMENTS_BAD, "no protected authentication path: a PIN is needed")
    if user_type == C.CKU_CONTEXT_SPECIFIC:
        _context_login(s, card, pin)
        return
    if user_type not in (C.CKU_USER, C.CKU_SO):
        raise CKRError(C.CKR_USER_TYPE_INVALID)
    so = user_type == C.CKU_SO
    with LIB.lock:
        if card.user or card.so:
            if card.so == so and card.user == (not so):
                raise CKRError(C.CKR_USER_ALREADY_LOGGED_IN)
            raise CKRError(C.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
        if so and any(not other.rw for other in LIB.card_sessions(card)):
            raise CKRError(C.CKR_SESSION_READ_ONLY_EXISTS)
    engine.login(card, so, pin)
    _load_operation_modules()


def _load_operation_modules() -> None:
    """Import what key operations and error reports need, deferred from C_Initialize to keep start-up cheap.

    Done at login rather than at the first signature: some hosts sandbox themselves (chroot, seccomp, a
    dropped file-system view) once set up, and an import there would fail. Login has paid for `cryptography`
    already (scrypt); these add a few ms to it.
    """
    import logging  # noqa: F401

    from cryptography.hazmat.primitives import serialization  # noqa: F401

    from vsc_provider.token import crypto  # noqa: F401


def _context_login(s: Session, card: Card, pin: bytes) -> None:
    ops = [op for op in (s.sign, s.decrypt, s.sign_recover) if op is not None and op.needs_auth and not op.authed]
    if not ops:
        raise CKRError(C.CKR_OPERATION_NOT_INITIALIZED, "no operation waits for a context-specific login")
    if not card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN)
    LIB.require().verify_pin(card, False, pin)
    for op in ops:
        op.authed = True


def logout(h: int) -> None:
    s = LIB.session(h)
    card = s.card
    with LIB.lock:
        if not (card.user or card.so):
            if card.policy.lenient_logout:
                return
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN)
        # Secrets first, operations second: a C_xInit racing in another thread either sees the card logged
        # out or has its operation cleared here (sign_init checks the login again after installing it).
        LIB.require().logout(card)
        for other in LIB.card_sessions(card):
            other.sign = other.decrypt = other.encrypt = other.verify = None
            other.sign_recover = other.verify_recover = None
