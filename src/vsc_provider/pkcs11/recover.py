"""C_SignRecoverInit/C_SignRecover and C_VerifyRecoverInit/C_VerifyRecover (RSA, single-part by definition)."""

from __future__ import annotations

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11.state import LIB, Operation, Session, active_operation, deliver, operation_key
from vsc_provider.token import audit

RECOVER_MECHS = (C.CKM_RSA_PKCS, C.CKM_RSA_X_509)


def _init(s: Session, attr: str, mech: Mechanism, key: int, classes: tuple[int, ...], usage: int) -> Operation:
    if mech.type not in RECOVER_MECHS:
        if getattr(s, attr) is not None:
            raise CKRError(C.CKR_OPERATION_ACTIVE)
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} does not recover data")
    if mech.param is not None:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "this mechanism takes no parameter")
    obj = operation_key(s, attr, mech.type, key, classes, usage, "recovery")
    from vsc_provider.token import recover

    engine = LIB.require()
    crypto_key = engine.crypto_key(s.card, obj)
    if usage == C.CKA_SIGN_RECOVER:
        fn, length = recover.make_sign_recover(mech.type, crypto_key)
        fn = engine.audited_call(s.card, obj, audit.SIGN, mech.type, fn)  # each signature is an audit entry
    else:
        fn, length = recover.make_verify_recover(mech.type, crypto_key)
    return Operation(fn, obj, needs_auth=obj.bool(C.CKA_ALWAYS_AUTHENTICATE), length=length)


def sign_recover_init(h: int, mech: Mechanism, key: int) -> None:
    s = LIB.session(h)
    if not s.card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN)
    s.sign_recover = _init(s, "sign_recover", mech, key, (C.CKO_PRIVATE_KEY,), C.CKA_SIGN_RECOVER)


def verify_recover_init(h: int, mech: Mechanism, key: int) -> None:
    s = LIB.session(h)
    op = _init(s, "verify_recover", mech, key, (C.CKO_PUBLIC_KEY,), C.CKA_VERIFY_RECOVER)
    op.needs_auth = False
    s.verify_recover = op


def _run(h: int, attr: str, data: bytes, query: bool, capacity: int) -> bytes:
    s, op = active_operation(h, attr)
    if op.result is None and query and attr == "sign_recover":
        return b"\x00" * op.length  # the length is known without signing
    return deliver(s, attr, op, lambda: op.worker(data), query, capacity)


def sign_recover(h: int, data: bytes, query: bool, capacity: int) -> bytes:
    return _run(h, "sign_recover", data, query, capacity)


def verify_recover(h: int, signature: bytes, query: bool, capacity: int) -> bytes:
    return _run(h, "verify_recover", signature, query, capacity)
