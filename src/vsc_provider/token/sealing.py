"""Key material at rest and in use: a token object's material sealed under the card's data key (or, for a
public key on a compatible card, under its public-object key), unsealed on use and loaded as a
`cryptography` key once per login."""

from __future__ import annotations

from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import device_key as dk
from vsc_provider.token import keywrap
from vsc_provider.token.card import Card, public_sealed
from vsc_provider.token.objects import DSA_DH_KEY_TYPES, TokenObject


def public_object_key(device_key: bytes, card: Card) -> bytes:
    """A compatible card's public-object key (see device_key.public_object_key). Strict cards have none:
    nothing of theirs is sealed without the data key, which only a PIN unwraps."""
    if not card.policy.public_keys:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in to use this key")
    return dk.public_object_key(device_key, card.serial)


def _public_sealed(card: Card, klass: int | None, private: bool) -> bool:
    """OTP secrets are sealed under the data key even when their names are public (CKA_PRIVATE false)."""
    return klass != C.CKO_OTP_KEY and public_sealed(card, private)


def seal(
    device_key: bytes, card: Card, attrs: dict[int, bytes], material: bytes | None, uid: bytes
) -> tuple[bytes | None, bool]:
    """A token object's sealed material, and whether the data key sealed it (else the public-object key)."""
    if material is None:
        return None, False
    if _public_sealed(card, A.get_ulong(attrs, C.CKA_CLASS), A.get_bool(attrs, C.CKA_PRIVATE)):
        return keywrap.seal(public_object_key(device_key, card), material, uid), False
    if card.data_key is None:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "storing key material needs the user to log in")
    return keywrap.seal(card.data_key, material, uid), True


def material(device_key: bytes, card: Card, obj: TokenObject) -> bytes:
    """An object's key material in the clear."""
    if obj.material is not None:
        return obj.material
    if obj.secret is None:
        raise CKRError(C.CKR_KEY_HANDLE_INVALID, "object holds no key material")
    key = public_object_key(device_key, card) if _public_sealed(card, obj.klass, obj.private) else card.data_key
    if key is None:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in to use this key")
    plain = keywrap.unseal(key, obj.secret, obj.uid)
    if plain is None:
        raise CKRError(C.CKR_DEVICE_ERROR, "key material does not decrypt: the store is damaged")
    return plain


def crypto_key(device_key: bytes, card: Card, obj: TokenObject) -> Any:
    """The `cryptography` key (or secret bytes) behind an object, loaded once per login."""
    key = card.keys.get(obj.handle)
    if key is not None:
        return key
    from cryptography.hazmat.primitives import serialization

    if obj.key_type in DSA_DH_KEY_TYPES:
        from vsc_provider.token import dsa_dh  # noqa: F401 - quiets `cryptography`'s FFDH warning
    if obj.klass == C.CKO_PRIVATE_KEY:
        key = serialization.load_der_private_key(material(device_key, card, obj), password=None)
    elif obj.klass in (C.CKO_SECRET_KEY, C.CKO_OTP_KEY):
        key = material(device_key, card, obj)
    elif obj.klass in (C.CKO_PUBLIC_KEY, C.CKO_CERTIFICATE):
        info = obj.attrs.get(C.CKA_PUBLIC_KEY_INFO)
        if not info:
            raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "object has no public key")
        key = serialization.load_der_public_key(info)
    else:
        raise CKRError(C.CKR_KEY_HANDLE_INVALID, "object is not a key")
    card.keys[obj.handle] = key
    return key
