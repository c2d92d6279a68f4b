"""Rules against the key-management attacks published for PKCS#11 (Clulow 2003; Delaune, Kremer and Steel
2008; Bortolozzo et al. 2010): a key must not both wrap and decrypt a sensitive key, nor unwrap what its
holder could have encrypted into a key that claims to be sensitive, nor gain such a pair of functions later.
"""

from __future__ import annotations

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.engine import Card
from vsc_provider.token.objects import TokenObject

# A key with both functions of a pair turns one into the inverse of the other.
CONFLICTING = ((C.CKA_WRAP, C.CKA_DECRYPT), (C.CKA_UNWRAP, C.CKA_ENCRYPT))


def no_new_conflict(before: dict[int, bytes], after: dict[int, bytes]) -> None:
    """C_SetAttributeValue and C_CopyObject may not give a key a pair of functions it did not have: a key
    that wrapped a sensitive key could otherwise decrypt the result (keys may be created with both, but
    then never wrap a sensitive key, see `check_wrap`)."""
    for first, second in CONFLICTING:
        had = A.get_bool(before, first) and A.get_bool(before, second)
        if A.get_bool(after, first) and A.get_bool(after, second) and not had:
            raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, f"a key may not gain both 0x{first:x} and 0x{second:x}")


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
