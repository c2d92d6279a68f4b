"""C_Encrypt* and C_Decrypt*: RSA (PKCS#1 v1.5, OAEP, raw) and AES (ECB, CBC, CBC_PAD, GCM, key wrap)."""

from __future__ import annotations

from functools import partial

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11.state import (
    LIB,
    Operation,
    Session,
    active_operation,
    deliver,
    feed,
    operation_key,
    require_room,
)


def encrypt_init(h: int, mech: Mechanism, key: int) -> None:
    s = LIB.session(h)
    classes = (C.CKO_PUBLIC_KEY, C.CKO_SECRET_KEY)
    obj = operation_key(s, "encrypt", mech.type, key, classes, C.CKA_ENCRYPT, "encryption")
    if obj.klass == C.CKO_SECRET_KEY and obj.private and not s.card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN)
    from vsc_provider.token import crypto  # imported at the first operation, not at C_Initialize

    s.encrypt = Operation(crypto.make_encryptor(mech, LIB.require().crypto_key(s.card, obj)), obj)


def decrypt_init(h: int, mech: Mechanism, key: int) -> None:
    s = LIB.session(h)
    classes = (C.CKO_PRIVATE_KEY, C.CKO_SECRET_KEY)
    obj = operation_key(s, "decrypt", mech.type, key, classes, C.CKA_DECRYPT, "decryption")
    if obj.private and not s.card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN)
    worker = LIB.require().decryptor(s.card, obj, mech)  # each decryption is an audit entry
    s.decrypt = Operation(worker, obj, needs_auth=obj.bool(C.CKA_ALWAYS_AUTHENTICATE))


_NO_OUTPUT_BOUND = bytes(16)


class _UpdateOutput(bytes):
    """A C_*Update output kept for the caller's retry after CKR_BUFFER_TOO_SMALL (a final or one-shot result is
    plain bytes): a call of the other kind in between ends the operation instead of handing over the wrong one."""


def _pending_of_another_call(s: Session, attr: str, op: Operation, update: bool) -> None:
    if op.result is not None and isinstance(op.result, _UpdateOutput) != update:
        setattr(s, attr, None)
        raise CKRError(C.CKR_OPERATION_ACTIVE, "an earlier call's output was not collected")


def _one_shot(attr: str, h: int, data: bytes, query: bool, capacity: int) -> bytes:
    s, op = active_operation(h, attr)
    _pending_of_another_call(s, attr, op, update=False)
    if op.multipart:
        setattr(s, attr, None)
        raise CKRError(C.CKR_OPERATION_ACTIVE, "single-part call after an update")
    return deliver(s, attr, op, lambda: op.worker.run(data), query, capacity)


def _update(attr: str, h: int, data: bytes, query: bool, capacity: int) -> bytes:
    s, op = active_operation(h, attr)
    _pending_of_another_call(s, attr, op, update=True)
    op.multipart = True
    out = op.result
    if out is None:
        out = op.result = _UpdateOutput(feed(s, attr, op, data))
    if query:
        # No output (an AEAD decryption holds everything back until the tag checks): answer a length that is
        # not 0, as the standard allows a query to exceed the need. A host that passes a NULL buffer for a
        # zero length (PyKCS11) would otherwise send its real call as a second query, and the output it
        # never collects would block the operation.
        return out or _NO_OUTPUT_BOUND
    require_room(len(out), capacity)
    op.result = None
    return out


def _final(attr: str, h: int, query: bool, capacity: int) -> bytes:
    s, op = active_operation(h, attr)
    _pending_of_another_call(s, attr, op, update=False)
    return deliver(s, attr, op, op.worker.final, query, capacity)


# The entry points, one set per direction: glue.py calls them as encrypt(h, data, query, capacity) and so on.
encrypt = partial(_one_shot, "encrypt")
encrypt_update = partial(_update, "encrypt")
encrypt_final = partial(_final, "encrypt")
decrypt = partial(_one_shot, "decrypt")
decrypt_update = partial(_update, "decrypt")
decrypt_final = partial(_final, "decrypt")
