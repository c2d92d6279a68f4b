"""CKA_ALWAYS_AUTHENTICATE (a PIN for every use of the key) could be bypassed by a process holding only a
normal user login: cleared with C_SetAttributeValue, dropped in a C_CopyObject, or side-stepped through
C_UnwrapKey (an RSA decryption with no PIN, the result read back as a non-sensitive secret key) and
C_DeriveKey. C_CopyObject also let a copy change its CKA_CLASS and CKA_KEY_TYPE."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Ecdh1Params, Mechanism
from vsc_provider.pkcs11 import keys, objects, signing

from .conftest import Env, ec_pair, rsa_pair, rv

AA_TRUE = {C.CKA_ALWAYS_AUTHENTICATE: A.TRUE}


def test_always_authenticate_cannot_be_cleared_with_set_attribute_value(env: Env) -> None:
    h = env.session()
    _, priv = rsa_pair(h, AA_TRUE)
    change = [(C.CKA_ALWAYS_AUTHENTICATE, A.FALSE)]
    assert rv(objects.set_attribute_value, h, priv, change) == C.CKR_ATTRIBUTE_READ_ONLY
    assert objects.get_attribute_value(h, priv, [C.CKA_ALWAYS_AUTHENTICATE]) == [A.TRUE]
    # Turning it on stays possible (and setting the current value is not a change).
    _, other = rsa_pair(h)
    objects.set_attribute_value(h, other, [(C.CKA_ALWAYS_AUTHENTICATE, A.TRUE)])
    objects.set_attribute_value(h, other, [(C.CKA_ALWAYS_AUTHENTICATE, A.TRUE)])
    signing.sign_init(h, Mechanism(C.CKM_SHA256_RSA_PKCS), other)
    assert rv(signing.sign, h, b"data", False, 256) == C.CKR_USER_NOT_LOGGED_IN


def test_a_copy_keeps_always_authenticate(env: Env) -> None:
    h = env.session()
    _, priv = rsa_pair(h, AA_TRUE)
    assert rv(objects.copy_object, h, priv, [(C.CKA_ALWAYS_AUTHENTICATE, A.FALSE)]) == C.CKR_ATTRIBUTE_READ_ONLY
    copy = objects.copy_object(h, priv, [(C.CKA_LABEL, b"copy")])
    assert objects.get_attribute_value(h, copy, [C.CKA_ALWAYS_AUTHENTICATE]) == [A.TRUE]


def test_a_copy_cannot_change_class_or_key_type(env: Env) -> None:
    h = env.session()
    _, priv = rsa_pair(h)
    to_secret = [
        (C.CKA_CLASS, A.encode(C.CKA_CLASS, C.CKO_SECRET_KEY)),
        (C.CKA_KEY_TYPE, A.encode(C.CKA_KEY_TYPE, C.CKK_GENERIC_SECRET)),
    ]
    assert rv(objects.copy_object, h, priv, to_secret) == C.CKR_ATTRIBUTE_READ_ONLY
    # Giving the unchanged values is fine.
    same = [
        (C.CKA_CLASS, A.encode(C.CKA_CLASS, C.CKO_PRIVATE_KEY)),
        (C.CKA_KEY_TYPE, A.encode(C.CKA_KEY_TYPE, C.CKK_RSA)),
    ]
    copy = objects.copy_object(h, priv, same)
    assert objects.get_attribute_value(h, copy, [C.CKA_CLASS]) == [A.encode(C.CKA_CLASS, C.CKO_PRIVATE_KEY)]


def test_unwrap_with_an_always_authenticate_key_is_refused(env: Env) -> None:
    h = env.session()
    pub, priv = rsa_pair(h, AA_TRUE)
    der = objects.get_attribute_value(h, pub, [0x129])[0]  # CKA_PUBLIC_KEY_INFO
    assert isinstance(der, bytes)
    secret = b"attack at dawn, sixteen+ bytes.."
    ciphertext = serialization.load_der_public_key(der).encrypt(secret, padding.PKCS1v15())  # type: ignore[union-attr]
    template = [
        (C.CKA_CLASS, A.encode(C.CKA_CLASS, C.CKO_SECRET_KEY)),
        (C.CKA_KEY_TYPE, A.encode(C.CKA_KEY_TYPE, C.CKK_GENERIC_SECRET)),
        (C.CKA_SENSITIVE, A.FALSE),
        (C.CKA_EXTRACTABLE, A.TRUE),
    ]
    got = rv(keys.unwrap_key, h, Mechanism(C.CKM_RSA_PKCS), priv, ciphertext, template)
    assert got == C.CKR_KEY_FUNCTION_NOT_PERMITTED
    # The same key without the flag unwraps (the refusal is about the flag, not the mechanism).
    pub2, priv2 = rsa_pair(h)
    der2 = objects.get_attribute_value(h, pub2, [0x129])[0]
    assert isinstance(der2, bytes)
    ct2 = serialization.load_der_public_key(der2).encrypt(secret, padding.PKCS1v15())  # type: ignore[union-attr]
    handle = keys.unwrap_key(h, Mechanism(C.CKM_RSA_PKCS), priv2, ct2, template)
    assert objects.get_attribute_value(h, handle, [C.CKA_VALUE]) == [secret]


def test_derive_with_an_always_authenticate_key_is_refused(env: Env) -> None:
    h = env.session()
    _, priv = ec_pair(h, "1.2.840.10045.3.1.7", AA_TRUE)
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = peer.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    mech = Mechanism(C.CKM_ECDH1_DERIVE, Ecdh1Params(C.CKD_NULL, b"", point))
    template = [(C.CKA_SENSITIVE, A.FALSE), (C.CKA_EXTRACTABLE, A.TRUE)]
    assert rv(keys.derive_key, h, mech, priv, template) == C.CKR_KEY_FUNCTION_NOT_PERMITTED
