"""CKA_TRUSTED and CKA_WRAP_WITH_TRUSTED: a key marked wrap-with-trusted leaves the card only under a
wrapping key the security officer marked trusted."""

from __future__ import annotations

import os

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from p11_support import SO_PIN, USER_PIN, CardEnv
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass

OAEP = (Mechanism.SHA_1, MGF.SHA1, None)


def _public_template(key: rsa.RSAPrivateKey, label: str, trusted: bool) -> dict[Attribute, object]:
    numbers = key.public_key().public_numbers()
    return {
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TOKEN: True,
        Attribute.LABEL: label,
        Attribute.MODULUS: numbers.n.to_bytes(256, "big"),
        Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes(3, "big"),
        Attribute.WRAP: True,
        Attribute.ENCRYPT: True,
        Attribute.TRUSTED: trusted,
    }


def test_wrap_with_trusted_needs_a_key_the_so_trusted(card_env: CardEnv) -> None:
    wrapping_private = rsa.generate_private_key(65537, 2048)
    token = card_env.lib.get_token(token_label="Test card")
    with token.open(rw=True, so_pin=SO_PIN) as so:
        so.create_object(_public_template(wrapping_private, "trusted wrap", True))
        so.create_object(_public_template(wrapping_private, "plain wrap", False))

    with token.open(rw=True, user_pin=USER_PIN) as s:
        trusted = s.get_key(ObjectClass.PUBLIC_KEY, label="trusted wrap")
        plain = s.get_key(ObjectClass.PUBLIC_KEY, label="plain wrap")
        value = os.urandom(32)
        guarded = s.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: value,
                Attribute.EXTRACTABLE: True,
                Attribute.SENSITIVE: False,
                Attribute.WRAP_WITH_TRUSTED: True,
            }
        )
        with pytest.raises(pkcs11.KeyNotWrappable):
            plain.wrap_key(guarded, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=OAEP)
        wrapped = trusted.wrap_key(guarded, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=OAEP)
        oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
        assert wrapping_private.decrypt(wrapped, oaep) == value

        # The user can neither trust a key nor lift the restriction.
        with pytest.raises(pkcs11.AttributeReadOnly):
            plain[Attribute.TRUSTED] = True
        with pytest.raises(pkcs11.AttributeReadOnly):
            guarded[Attribute.WRAP_WITH_TRUSTED] = False
        with pytest.raises(pkcs11.AttributeReadOnly):
            s.create_object(_public_template(wrapping_private, "self-trusted", True))
        assert not plain[Attribute.TRUSTED]

        # Keys without the restriction wrap under any wrapping key.
        free = s.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: value,
                Attribute.EXTRACTABLE: True,
                Attribute.SENSITIVE: False,
            }
        )
        again = plain.wrap_key(free, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=OAEP)
        assert wrapping_private.decrypt(again, oaep) == value
