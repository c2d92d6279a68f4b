"""Key-use policy that must hold on every call: CKA_TRUSTED and CKA_WRAP_WITH_TRUSTED (a key marked
wrap-with-trusted leaves the card only under a wrapping key the security officer marked trusted), and
attribute changes seen by C_SignInit's prepared path."""

from __future__ import annotations

import ctypes
import os

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from p11_support import CK_MECHANISM, SO_PIN, USER_PIN, CardEnv, RawModule, make_template, ulong
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass

from vsc_provider.ck import constants as C

OAEP = (Mechanism.SHA_1, MGF.SHA1, None)
PSS_PARAM = (Mechanism.SHA256, MGF.SHA256, 32)


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


def test_sign_init_sees_changes_to_a_key_it_signed_with_before(card_env: CardEnv) -> None:
    """C_SignInit reuses a prepared signer for a key it checked before: changed attributes and a destroyed key
    must still be seen."""
    token = card_env.lib.get_token(token_label="Test card")
    with token.open(rw=True, user_pin=USER_PIN) as s:
        _, priv = s.generate_keypair(KeyType.RSA, 2048, store=False)
        for _ in range(2):  # the second signature takes the prepared path
            assert priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
        priv[Attribute.SIGN] = False
        with pytest.raises(pkcs11.PKCS11Error) as refused:
            priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
        assert "0x68" in str(refused.value)  # CKR_KEY_FUNCTION_NOT_PERMITTED (python-pkcs11 has no class for it)
        priv[Attribute.SIGN] = True
        assert priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
        priv[Attribute.ALWAYS_AUTHENTICATE] = True
        with pytest.raises(pkcs11.UserNotLoggedIn):  # no CKU_CONTEXT_SPECIFIC login given for this signature
            priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
        _, other = s.generate_keypair(KeyType.RSA, 2048, store=False)
        assert other.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=PSS_PARAM)
        assert other.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=PSS_PARAM)
        other.destroy()
        with pytest.raises(pkcs11.KeyHandleInvalid):
            other.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=PSS_PARAM)


def test_no_user_path_to_a_trusted_key_or_an_unguarded_copy(card_env: CardEnv) -> None:
    """The user may not mark a key trusted through key generation, nor shed CKA_WRAP_WITH_TRUSTED through a
    copy; setting CKA_WRAP_WITH_TRUSTED later is allowed (false -> true only)."""
    token = card_env.lib.get_token(token_label="Test card")
    with token.open(rw=True, user_pin=USER_PIN) as s:
        with pytest.raises(pkcs11.AttributeReadOnly):
            s.generate_keypair(KeyType.RSA, 2048, store=True, public_template={Attribute.TRUSTED: True})
        with pytest.raises(pkcs11.AttributeReadOnly):
            s.generate_keypair(KeyType.RSA, 2048, store=False, public_template={Attribute.TRUSTED: True})
        key = s.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: os.urandom(16),
                Attribute.EXTRACTABLE: True,
                Attribute.SENSITIVE: False,
            }
        )
        key[Attribute.WRAP_WITH_TRUSTED] = True
        assert key[Attribute.WRAP_WITH_TRUSTED]
        with pytest.raises(pkcs11.AttributeReadOnly):
            key[Attribute.WRAP_WITH_TRUSTED] = False
        with pytest.raises(pkcs11.AttributeReadOnly):
            key.copy({Attribute.WRAP_WITH_TRUSTED: False})
        assert key.copy({Attribute.LABEL: "copy"})[Attribute.WRAP_WITH_TRUSTED]


def test_allowed_mechanisms_limit_what_a_key_does(card_env: CardEnv, module_path: str) -> None:
    raw = RawModule(module_path)
    h = raw.open(int(card_env.slot().slot_id))
    assert raw.login(h, USER_PIN) in (C.CKR_OK, C.CKR_USER_ALREADY_LOGGED_IN)
    pairs = [
        (C.CKA_CLASS, ulong(C.CKO_SECRET_KEY)),
        (C.CKA_KEY_TYPE, ulong(C.CKK_GENERIC_SECRET)),
        (C.CKA_VALUE, os.urandom(32)),
        (C.CKA_SIGN, ulong(1)[:1]),
        (C.CKA_ALLOWED_MECHANISMS, ulong(C.CKM_SHA256_HMAC)),
    ]
    attrs, keep = make_template(pairs)
    key = ctypes.c_ulong()
    assert raw.C_CreateObject(h, attrs, len(pairs), ctypes.byref(key)) == C.CKR_OK
    del keep

    def sign_init(mech: int) -> int:
        return int(raw.C_SignInit(h, ctypes.byref(CK_MECHANISM(mech, None, 0)), key.value))

    assert sign_init(C.CKM_SHA512_HMAC) == C.CKR_MECHANISM_INVALID
    assert sign_init(C.CKM_SHA256_HMAC) == C.CKR_OK
    out = (ctypes.c_ubyte * 64)()
    n = ctypes.c_ulong(64)
    assert raw.C_Sign(h, b"data", 4, out, ctypes.byref(n)) == C.CKR_OK and n.value == 32
    assert raw.C_CloseSession(h) == C.CKR_OK
