"""C_EncapsulateKey and C_DecapsulateKey (PKCS#11 3.2): a shared secret becomes a new secret key object.

Encapsulating needs the public key (CKA_ENCAPSULATE), decapsulating the private key (CKA_DECAPSULATE). Both
build the new key from the caller's template the way C_DeriveKey does: CKK_GENERIC_SECRET unless the template
says otherwise, the whole 32-byte secret unless CKA_VALUE_LEN asks for fewer bytes.
"""

from __future__ import annotations

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import templates as T
from vsc_provider.pkcs11.state import LIB, Session, add_new_key, check_allowed, find_object, require_room
from vsc_provider.token import mechanisms

_KEM_FLAGS = C.CKF_ENCAPSULATE | C.CKF_DECAPSULATE


def _kem_key(s: Session, mech: Mechanism, handle: int, klass: int, usage: int, what: str) -> object:
    info = mechanisms.MECHANISMS.get(mech.type)
    if info is None or not info[2] & _KEM_FLAGS:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} does not {what}")
    obj = find_object(s, handle, C.CKR_KEY_HANDLE_INVALID)
    if obj.klass != klass:
        raise CKRError(
            C.CKR_KEY_TYPE_INCONSISTENT, f"{what} needs a {'public' if klass == C.CKO_PUBLIC_KEY else 'private'} key"
        )
    if not obj.bool(usage):
        raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, f"key does not allow {what}")
    check_allowed(obj, mech.type)
    if obj.bool(C.CKA_ALWAYS_AUTHENTICATE):  # no *Init after which C_Login(CKU_CONTEXT_SPECIFIC) could come
        raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, "key needs a PIN for each use (CKA_ALWAYS_AUTHENTICATE)")
    return LIB.require().crypto_key(s.card, obj)


def _new_secret(s: Session, pairs: list[tuple[int, bytes]], secret: bytes) -> int:
    template = A.template(pairs)
    klass = T.ulong(template, C.CKA_CLASS)
    if klass is not None and klass != C.CKO_SECRET_KEY:
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "a shared secret becomes a secret key")
    key_type = T.secret_key_type(template, C.CKK_GENERIC_SECRET)
    length = T.ulong(template, C.CKA_VALUE_LEN) or len(secret)
    if length > len(secret):
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN is longer than the shared secret")
    value = secret[:length]
    return add_new_key(s, T.secret_object(template, key_type, value, local=False, gen_mech=None), value)


def encapsulate_key(
    h: int, mech: Mechanism, public: int, pairs: list[tuple[int, bytes]], query: bool, capacity: int
) -> tuple[bytes, int]:
    """(ciphertext, new key handle); a length query or a short buffer creates no key (handle 0)."""
    from vsc_provider.token import pqc

    s = LIB.session(h)
    key = _kem_key(s, mech, public, C.CKO_PUBLIC_KEY, C.CKA_ENCAPSULATE, "encapsulate")
    length = pqc.ciphertext_length(mech, key)
    if query:
        A.template(pairs)  # a malformed template fails the length query too
        return b"\x00" * length, 0
    require_room(length, capacity)
    secret, ciphertext = pqc.encapsulate(mech, key)
    return ciphertext, _new_secret(s, pairs, secret)


def decapsulate_key(h: int, mech: Mechanism, private: int, pairs: list[tuple[int, bytes]], ciphertext: bytes) -> int:
    from vsc_provider.token import pqc

    s = LIB.session(h)
    if not s.card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN)
    key = _kem_key(s, mech, private, C.CKO_PRIVATE_KEY, C.CKA_DECAPSULATE, "decapsulate")
    return _new_secret(s, pairs, pqc.decapsulate(mech, key, ciphertext))
