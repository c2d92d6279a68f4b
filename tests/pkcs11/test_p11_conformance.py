"""Conformance that other PKCS#11 test suites check: attributes kept as given, one-way attributes, the
published key-management attacks refused, and session objects as the spec's session-state tables say."""

from __future__ import annotations

import hashlib
import os

import pkcs11
import pkcs11.attributes
import pytest
from cryptography.hazmat.primitives import keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from p11_support import ulong
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from tests.test_cli_support import self_signed
from vsc_provider.ck import constants as C

pkcs11.attributes.ATTRIBUTE_TYPES[Attribute.JAVA_MIDP_SECURITY_DOMAIN] = (bytes, bytes)  # type: ignore[index]
pkcs11.attributes.ATTRIBUTE_TYPES[Attribute.CERTIFICATE_CATEGORY] = (bytes, bytes)  # type: ignore[index]
TRUE, FALSE = b"\x01", b"\x00"


def _certificate_der() -> bytes:
    cert = self_signed(ec.generate_private_key(ec.SECP256R1()), "conformance")
    return cert.public_bytes(serialization.Encoding.DER)


def _secret(session: pkcs11.Session, value: bytes, **attrs: object) -> pkcs11.SecretKey:
    template: dict[Attribute, object] = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.VALUE: value,
    }
    template.update({Attribute[name]: v for name, v in attrs.items()})
    return session.create_object(template)


# --- attributes given at creation ---------------------------------------------------------------


def test_certificate_attributes_given_at_creation_are_kept(session: pkcs11.Session) -> None:
    der = _certificate_der()
    subject_hash, issuer_hash = os.urandom(20), os.urandom(20)
    check = hashlib.sha1(der).digest()[:3]
    cert = session.create_object(
        {
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
            Attribute.VALUE: der,
            Attribute.LABEL: "kept",
            Attribute.HASH_OF_SUBJECT_PUBLIC_KEY: subject_hash,
            Attribute.HASH_OF_ISSUER_PUBLIC_KEY: issuer_hash,
            Attribute.CERTIFICATE_CATEGORY: ulong(C.CK_CERTIFICATE_CATEGORY_AUTHORITY),
            Attribute.URL: "https://pki.example/ca.crt",
            Attribute.CHECK_VALUE: check,
            Attribute.JAVA_MIDP_SECURITY_DOMAIN: ulong(2),
        }
    )
    assert cert[Attribute.HASH_OF_SUBJECT_PUBLIC_KEY] == subject_hash
    assert cert[Attribute.HASH_OF_ISSUER_PUBLIC_KEY] == issuer_hash
    assert cert[Attribute.CERTIFICATE_CATEGORY] == ulong(C.CK_CERTIFICATE_CATEGORY_AUTHORITY)
    assert cert[Attribute.URL] == "https://pki.example/ca.crt"
    assert cert[Attribute.CHECK_VALUE] == check
    assert cert[Attribute.JAVA_MIDP_SECURITY_DOMAIN] == ulong(2)
    with pytest.raises(pkcs11.AttributeValueInvalid):
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                Attribute.VALUE: der,
                Attribute.CHECK_VALUE: bytes(b ^ 0xFF for b in check),
            }
        )


def test_secret_key_check_values(session: pkcs11.Session) -> None:
    value = os.urandom(16)
    kcv = Cipher(algorithms.AES(value), modes.ECB()).encryptor().update(b"\x00" * 16)[:3]
    assert _secret(session, value)[Attribute.CHECK_VALUE] == kcv
    assert _secret(session, value, CHECK_VALUE=kcv)[Attribute.CHECK_VALUE] == kcv
    assert _secret(session, value, CHECK_VALUE=b"")[Attribute.CHECK_VALUE] == b""  # asked for none
    with pytest.raises(pkcs11.AttributeValueInvalid):
        _secret(session, value, CHECK_VALUE=b"\x00\x00\x00")
    generic = session.create_object(
        {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET, Attribute.VALUE: value}
    )
    assert generic[Attribute.CHECK_VALUE] == hashlib.sha1(value).digest()[:3]


# --- one-way attributes -------------------------------------------------------------------------


def test_sensitive_and_extractable_latch(session: pkcs11.Session) -> None:
    key = _secret(session, os.urandom(16), SENSITIVE=False, EXTRACTABLE=True)
    assert not key[Attribute.ALWAYS_SENSITIVE] and not key[Attribute.NEVER_EXTRACTABLE]
    key[Attribute.SENSITIVE] = True
    with pytest.raises(pkcs11.AttributeReadOnly):
        key[Attribute.SENSITIVE] = False
    key[Attribute.EXTRACTABLE] = False
    with pytest.raises(pkcs11.AttributeReadOnly):
        key[Attribute.EXTRACTABLE] = True
    # Latching later does not make a key "always" sensitive or "never" extractable.
    assert not key[Attribute.ALWAYS_SENSITIVE] and not key[Attribute.NEVER_EXTRACTABLE]
    with pytest.raises(pkcs11.AttributeSensitive):
        key[Attribute.VALUE]


def test_copy_keeps_the_one_way_attributes(session: pkcs11.Session) -> None:
    generated = session.generate_key(KeyType.AES, 128, template={Attribute.EXTRACTABLE: False})
    assert generated[Attribute.ALWAYS_SENSITIVE] and generated[Attribute.NEVER_EXTRACTABLE]
    with pytest.raises(pkcs11.AttributeReadOnly):
        generated.copy({Attribute.SENSITIVE: False})
    with pytest.raises(pkcs11.AttributeReadOnly):
        generated.copy({Attribute.EXTRACTABLE: True})
    with pytest.raises(pkcs11.AttributeReadOnly):
        generated.copy({Attribute.ALWAYS_SENSITIVE: False})
    copy = generated.copy({Attribute.LABEL: "copy"})
    assert copy[Attribute.ALWAYS_SENSITIVE] and copy[Attribute.NEVER_EXTRACTABLE]
    assert copy[Attribute.SENSITIVE] and not copy[Attribute.EXTRACTABLE]

    plain = _secret(session, os.urandom(16), SENSITIVE=False, EXTRACTABLE=True)
    latched = plain.copy({Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
    assert latched[Attribute.SENSITIVE] and not latched[Attribute.EXTRACTABLE]
    assert not latched[Attribute.ALWAYS_SENSITIVE] and not latched[Attribute.NEVER_EXTRACTABLE]


def test_wrap_and_unwrap_keep_always_sensitive_and_never_extractable_honest(session: pkcs11.Session) -> None:
    wrapper = _secret(session, os.urandom(32), WRAP=True, UNWRAP=True, ENCRYPT=False, DECRYPT=False)
    target = session.generate_key(KeyType.AES, 128, template={Attribute.EXTRACTABLE: True})
    assert target[Attribute.ALWAYS_SENSITIVE] and not target[Attribute.NEVER_EXTRACTABLE]
    wrapped = wrapper.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP)
    assert target[Attribute.ALWAYS_SENSITIVE]  # wrapping changes nothing on the wrapped key
    back = wrapper.unwrap_key(
        ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.AES_KEY_WRAP, template={}
    )
    assert back[Attribute.SENSITIVE] and not back[Attribute.LOCAL]
    assert not back[Attribute.ALWAYS_SENSITIVE] and not back[Attribute.NEVER_EXTRACTABLE]


# --- key-management attacks ---------------------------------------------------------------------


def test_wrap_then_decrypt_with_the_same_key_is_refused(session: pkcs11.Session) -> None:
    """Clulow's attack: wrap a sensitive key under a key that can also decrypt, then decrypt the blob."""
    both = _secret(session, os.urandom(16), WRAP=True, DECRYPT=True)
    sensitive = session.generate_key(KeyType.AES, 128, template={Attribute.EXTRACTABLE: True})
    with pytest.raises(pkcs11.KeyNotWrappable):
        both.wrap_key(sensitive, mechanism=Mechanism.AES_KEY_WRAP)
    # A non-sensitive key may still be wrapped under it: its value can be read anyway.
    readable = _secret(session, os.urandom(16), SENSITIVE=False, EXTRACTABLE=True)
    assert both.wrap_key(readable, mechanism=Mechanism.AES_KEY_WRAP)

    # Wrap with a wrap-only key, then try to give it (or a copy) the power to decrypt, also after
    # dropping CKA_WRAP first.
    wrap_only = _secret(session, os.urandom(16), WRAP=True, DECRYPT=False)
    wrapped = wrap_only.wrap_key(sensitive, mechanism=Mechanism.AES_KEY_WRAP)
    assert len(wrapped) == 24
    with pytest.raises(pkcs11.AttributeReadOnly):
        wrap_only[Attribute.DECRYPT] = True
    with pytest.raises(pkcs11.AttributeReadOnly):
        wrap_only.copy({Attribute.DECRYPT: True})
    wrap_only[Attribute.WRAP] = False
    with pytest.raises(pkcs11.AttributeReadOnly):
        wrap_only[Attribute.DECRYPT] = True
    assert not wrap_only[Attribute.DECRYPT]


def test_wrap_under_a_public_key_whose_private_key_decrypts_is_refused(session: pkcs11.Session) -> None:
    pub, priv = session.generate_keypair(KeyType.RSA, 2048, store=False)
    assert priv[Attribute.DECRYPT]
    sensitive = session.generate_key(KeyType.AES, 128, template={Attribute.EXTRACTABLE: True})
    oaep = (Mechanism.SHA_1, pkcs11.MGF.SHA1, None)
    with pytest.raises(pkcs11.KeyNotWrappable):
        pub.wrap_key(sensitive, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=oaep)
    # Wrap while the private key cannot decrypt, then let it (or a copy of it) decrypt: refused.
    priv[Attribute.DECRYPT] = False
    assert pub.wrap_key(sensitive, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=oaep)
    with pytest.raises(pkcs11.AttributeReadOnly):
        priv[Attribute.DECRYPT] = True
    with pytest.raises(pkcs11.AttributeReadOnly):
        priv.copy({Attribute.DECRYPT: True})


def test_unwrap_a_known_key_as_sensitive_is_refused(session: pkcs11.Session) -> None:
    """Encrypt a value of the caller's choice with a key that also unwraps, then unwrap it as 'sensitive'."""
    both = _secret(session, os.urandom(16), ENCRYPT=True, UNWRAP=True, WRAP=False, DECRYPT=False)
    known = os.urandom(16)
    blob = both.encrypt(known, mechanism=Mechanism.AES_KEY_WRAP)
    with pytest.raises(pkcs11.PKCS11Error) as refused:
        both.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=Mechanism.AES_KEY_WRAP, template={})
    assert "0x68" in str(refused.value)  # CKR_KEY_FUNCTION_NOT_PERMITTED
    readable = both.unwrap_key(
        ObjectClass.SECRET_KEY,
        KeyType.AES,
        blob,
        mechanism=Mechanism.AES_KEY_WRAP,
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    assert readable[Attribute.VALUE] == known
    # Encrypt, then drop CKA_ENCRYPT to pass as a plain unwrapping key: refused; nor may an encrypting key
    # learn to unwrap.
    with pytest.raises(pkcs11.AttributeReadOnly):
        both[Attribute.ENCRYPT] = False
    encrypt_only = _secret(session, os.urandom(16), ENCRYPT=True, UNWRAP=False)
    encrypt_only[Attribute.ENCRYPT] = False
    with pytest.raises(pkcs11.AttributeReadOnly):
        encrypt_only[Attribute.UNWRAP] = True
    unwrap_only = _secret(session, value := os.urandom(16), UNWRAP=True, ENCRYPT=False)
    sealed = unwrap_only.unwrap_key(
        ObjectClass.SECRET_KEY,
        KeyType.AES,
        keywrap.aes_key_wrap(value, known),
        mechanism=Mechanism.AES_KEY_WRAP,
        template={},
    )
    assert sealed[Attribute.SENSITIVE]


def test_oaep_with_a_sha3_hash_is_a_parameter_error(session: pkcs11.Session) -> None:
    """OpenSSL's OAEP has no SHA-3: the module says CKR_MECHANISM_PARAM_INVALID (it once leaked
    CKR_GENERAL_ERROR, found by tests/native/test_hostile.py)."""
    pub, priv = session.generate_keypair(KeyType.RSA, 2048, store=False)
    for hash_alg in (Mechanism.SHA3_256, Mechanism.SHA3_512):
        with pytest.raises(pkcs11.MechanismParamInvalid):
            pub.encrypt(b"x", mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(hash_alg, pkcs11.MGF.SHA256, None))
    ciphertext = pub.encrypt(
        b"x", mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, None)
    )
    assert (
        priv.decrypt(
            ciphertext, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, None)
        )
        == b"x"
    )
