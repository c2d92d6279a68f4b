"""C_Sign*/C_Verify*: single and multi-part, with CKA_ALWAYS_AUTHENTICATE and the length-query convention.

This is the hot path: after C_SignInit, C_Sign is a dict lookup, one `cryptography` call and a copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import otp
from vsc_provider.pkcs11.state import (
    LIB,
    Operation,
    Session,
    check_allowed,
    deliver,
    feed,
    find_object,
    operation_key,
)
from vsc_provider.token import mechanisms
from vsc_provider.token.store import SIGNAL_VALUE

if TYPE_CHECKING:
    from vsc_provider.token.engine import Card
    from vsc_provider.token.objects import TokenObject

_SESSIONS = LIB.sessions


def _start(s: Session, card: Card, signer: Any, obj: TokenObject, needs_auth: bool) -> None:
    s.sign = Operation(signer, obj, needs_auth, signer.length)
    # C_Logout in another thread since the caller's check: it may have missed this one
    if obj.private and not card.user:
        s.sign = None
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN)


def sign_init(h: int, mech: Mechanism, key: int) -> None:
    s = _SESSIONS.get(h)
    engine = LIB.engine
    if s is None or engine is None or engine.signal[SIGNAL_VALUE] != engine.signal_seen:
        s = LIB.session(h)  # the error, or another process committed: take it in first
    card = s.card
    # Fast path: this key and mechanism passed every check below before, and neither the object nor its
    # attributes changed since (SetAttributeValue and a reload from the store install a new attribute dict;
    # a logout or the card's removal empties `signers`). The operation starts on the shared signer;
    # multi-part use takes a copy with state of its own.
    prepared = card.signers.get((key, mech))
    if prepared is not None and s.sign is None and card.user:
        signer, obj, attrs, needs_auth = prepared
        if card.get(key) is obj and obj.attrs is attrs:
            _start(s, card, signer, obj, needs_auth)
            return
    s = LIB.session(h)  # every check, a removed card included (its `signers` are empty)
    if mech.type in otp.MECHANISMS:
        otp.sign_init(s, mech, key)
        return
    obj = operation_key(s, "sign", mech.type, key, (C.CKO_PRIVATE_KEY, C.CKO_SECRET_KEY), C.CKA_SIGN, "signing")
    if obj.private and not card.user:  # a key without CKA_PRIVATE: only a compatible card has one
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN)
    if prepared is not None and prepared[1] is obj:
        signer = prepared[0]
    else:
        signer = LIB.require().signer(card, obj, mech)  # each signature it makes is an audit entry
    card.keep_signer(key, mech, signer, obj)
    _start(s, card, signer, obj, obj.bool(C.CKA_ALWAYS_AUTHENTICATE))


def _sign_op(h: int) -> tuple[Session, Operation]:
    s = _SESSIONS.get(h) or LIB.session(h)
    op = s.sign
    if op is None:
        raise CKRError(C.CKR_OPERATION_NOT_INITIALIZED)
    if op.needs_auth and not op.authed:
        s.sign = None
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "this key needs C_Login(CKU_CONTEXT_SPECIFIC) for each signature")
    return s, op


def sign(h: int, data: bytes, query: bool, capacity: int) -> bytes:
    s, op = _sign_op(h)
    if op.multipart:
        s.sign = None
        raise CKRError(C.CKR_OPERATION_ACTIVE, "C_Sign after C_SignUpdate")
    if op.result is None:
        if query:  # the length is known without signing
            return b"\x00" * op.length
        try:
            out = op.worker.sign(data)
        except Exception:
            s.sign = None
            raise
        if len(out) <= capacity:  # the usual call: no closure, no further call
            s.sign = None
            return out
        op.result = out  # a short buffer: deliver answers it and keeps the signature for the next call
    return deliver(s, "sign", op, None, query, capacity)


def sign_update(h: int, part: bytes) -> None:
    s, op = _sign_op(h)
    if op.result is not None:  # C_Sign/C_SignFinal answered CKR_BUFFER_TOO_SMALL: only that call may follow
        s.sign = None
        raise CKRError(C.CKR_OPERATION_ACTIVE, "the signature was computed: call C_Sign/C_SignFinal again")
    if not op.multipart:
        op.worker = op.worker.fresh()
    feed(s, "sign", op, part)


def sign_final(h: int, query: bool, capacity: int) -> bytes:
    s, op = _sign_op(h)
    if op.result is None and query:
        return b"\x00" * op.length
    if not op.multipart:  # C_SignFinal straight after C_SignInit: an empty message
        op.multipart = True
        op.worker = op.worker.fresh()
    return deliver(s, "sign", op, op.worker.final, query, capacity)


def verify_init(h: int, mech: Mechanism, key: int) -> None:
    s = LIB.session(h)
    if s.verify is not None:
        raise CKRError(C.CKR_OPERATION_ACTIVE)
    if mech.type not in mechanisms.MECHANISMS:
        s.card.policy.check_mechanism(mech.type)  # DSA on compatible cards
    obj = find_object(s, key, C.CKR_KEY_HANDLE_INVALID)
    check_allowed(obj, mech.type)
    engine = LIB.require()
    if obj.klass == C.CKO_PUBLIC_KEY:
        if not obj.bool(C.CKA_VERIFY):
            raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, "key has CKA_VERIFY false")
        key_obj = engine.crypto_key(s.card, obj)
    elif obj.klass == C.CKO_PRIVATE_KEY:
        key_obj = engine.crypto_key(s.card, obj).public_key()
    elif obj.klass == C.CKO_SECRET_KEY:
        if not obj.bool(C.CKA_VERIFY):
            raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, "key has CKA_VERIFY false")
        key_obj = engine.crypto_key(s.card, obj)
    else:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "verifying needs a key")
    from vsc_provider.token import crypto

    s.verify = Operation(crypto.make_verifier(mech, key_obj), obj)


def _verify_op(h: int) -> tuple[Session, Operation]:
    s = LIB.session(h)
    if s.verify is None:
        raise CKRError(C.CKR_OPERATION_NOT_INITIALIZED)
    return s, s.verify


def verify(h: int, data: bytes, signature: bytes) -> None:
    s, op = _verify_op(h)
    s.verify = None
    if op.multipart:
        raise CKRError(C.CKR_OPERATION_ACTIVE, "C_Verify after C_VerifyUpdate")
    op.worker.verify(data, signature)


def verify_update(h: int, part: bytes) -> None:
    s, op = _verify_op(h)
    feed(s, "verify", op, part)


def verify_final(h: int, signature: bytes) -> None:
    s, op = _verify_op(h)
    s.verify = None
    op.worker.final(signature)
