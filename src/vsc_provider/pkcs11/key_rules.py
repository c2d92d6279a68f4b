"""Rules against the key-management attacks published for PKCS#11 (Clulow 2003; Delaune, Kremer and Steel
2008; Bortolozzo et al. 2010): a key must not both wrap and decrypt a sensitive key, nor unwrap what its
holder could have encrypted into a key that claims to be sensitive, nor gain such a function later.
"""

from __future__ import annotations

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.engine import Card
from vsc_provider.token.objects import TokenObject


def check_changes(obj: TokenObject, after: dict[int, bytes]) -> None:
    """What C_SetAttributeValue and C_CopyObject may change in a key's functions.

    CKA_DECRYPT and CKA_UNWRAP never go from false to true after creation: a key (or the private key of a
    pair) that wrapped a sensitive key while it could not decrypt must never open the result, and a key that
    encrypted values of the caller's choice must never unwrap them as sensitive keys, whatever was cleared
    in between. A key that can unwrap keeps CKA_ENCRYPT: clearing it would hide from `check_unwrap` that
    the caller may have made the wrapped values himself. A key created with both functions of a pair is
    held by `check_wrap` and `check_unwrap` instead.
    """
    before = obj.attrs
    for attr, name in ((C.CKA_DECRYPT, "CKA_DECRYPT"), (C.CKA_UNWRAP, "CKA_UNWRAP")):
        if A.get_bool(after, attr) and not A.get_bool(before, attr):
            raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, f"{name} cannot be set after the key was created")
    if A.get_bool(before, C.CKA_UNWRAP) and A.get_bool(before, C.CKA_ENCRYPT) and not A.get_bool(after, C.CKA_ENCRYPT):
        raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, "a key that can unwrap keeps CKA_ENCRYPT")


def _can_decrypt(card: Card, wrapping: TokenObject) -> bool:
    if wrapping.klass == C.CKO_SECRET_KEY:
        return wrapping.bool(C.CKA_DECRYPT)
    info = wrapping.attrs.get(C.CKA_PUBLIC_KEY_INFO)
    return bool(info) and any(
        o.klass == C.CKO_PRIVATE_KEY and o.attrs.get(C.CKA_PUBLIC_KEY_INFO) == info and o.bool(C.CKA_DECRYPT)
        for o in card.all_objects()
    )


def check_wrap(card: Card, wrapping: TokenObject, target: TokenObject) -> None:
    """A sensitive key never leaves under a wrapping key whose own decryption would open it again."""
    if target.bool(C.CKA_SENSITIVE, True) and _can_decrypt(card, wrapping):
        raise CKRError(
            C.CKR_KEY_NOT_WRAPPABLE, "a sensitive key is not wrapped under a key that can also decrypt (CKA_DECRYPT)"
        )


def check_unwrap(unwrapping: TokenObject, attrs: dict[int, bytes]) -> None:
    """A secret key that can also encrypt lets its user make any wrapped value: what it unwraps is a key the
    caller may know, which must not be made sensitive."""
    if unwrapping.klass == C.CKO_SECRET_KEY and unwrapping.bool(C.CKA_ENCRYPT) and A.get_bool(attrs, C.CKA_SENSITIVE):
        raise CKRError(
            C.CKR_KEY_FUNCTION_NOT_PERMITTED,
            "an unwrapping key that can also encrypt (CKA_ENCRYPT) does not make sensitive keys",
        )
