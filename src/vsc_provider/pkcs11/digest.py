"""C_DigestInit, C_Digest, C_DigestUpdate, C_DigestKey and C_DigestFinal."""

from __future__ import annotations

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11.state import LIB, Operation, Session, deliver, feed, find_object


def digest_init(h: int, mech: Mechanism) -> None:
    s = LIB.session(h)
    if s.digest is not None:
        raise CKRError(C.CKR_OPERATION_ACTIVE)
    from vsc_provider.token import crypto  # imported at the first operation, not at C_Initialize

    s.digest = Operation(crypto.make_digest(mech), length=crypto.digest_size(mech.type))


def _op(h: int) -> tuple:
    s = LIB.session(h)
    if s.digest is None:
        raise CKRError(C.CKR_OPERATION_NOT_INITIALIZED)
    return s, s.digest


def digest(h: int, data: bytes, query: bool, capacity: int) -> bytes:
    s, op = _op(h)
    if op.multipart:
        s.digest = None
        raise CKRError(C.CKR_OPERATION_ACTIVE, "C_Digest after C_DigestUpdate")
    if op.result is None and query:
        # The length is known without hashing: keep the operation for the real call.
        return b"\x00" * op.length

    def run() -> bytes:
        op.worker.update(data)
        return op.worker.finalize()

    return deliver(s, "digest", op, run, query, capacity)


def _ended_by_a_result(s: Session, op: Operation) -> None:
    """C_Digest or C_DigestFinal answered CKR_BUFFER_TOO_SMALL: the hash is final, only that call may follow."""
    if op.result is not None:
        s.digest = None
        raise CKRError(C.CKR_OPERATION_ACTIVE, "the digest was computed: call C_Digest/C_DigestFinal again")


def digest_update(h: int, part: bytes) -> None:
    s, op = _op(h)
    _ended_by_a_result(s, op)
    feed(s, "digest", op, part)


def digest_key(h: int, key: int) -> None:
    s, op = _op(h)
    _ended_by_a_result(s, op)
    obj = find_object(s, key, C.CKR_KEY_HANDLE_INVALID)
    if obj.klass != C.CKO_SECRET_KEY:
        raise CKRError(C.CKR_KEY_INDIGESTIBLE, "only secret keys can be digested")
    if obj.bool(C.CKA_SENSITIVE, True) or not obj.bool(C.CKA_EXTRACTABLE):
        raise CKRError(C.CKR_KEY_INDIGESTIBLE, "sensitive keys are not digested")
    op.multipart = True
    op.worker.update(LIB.require().material(s.card, obj))


def digest_final(h: int, query: bool, capacity: int) -> bytes:
    s, op = _op(h)
    if op.result is None and query:
        return b"\x00" * op.length
    return deliver(s, "digest", op, op.worker.finalize, query, capacity)
