"""Objects as clients need them: shared CKA_ID across certificate and keys, CKA_PUBLIC_KEY_INFO, DER
CKA_EC_POINT, sensitive attributes, templates of the wrong shape, and object management calls.
"""

from __future__ import annotations

import ctypes
import datetime

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from p11_support import (
    CKA_CERTIFICATE_CATEGORY,
    CKA_PUBLIC_KEY_INFO,
    CardEnv,
    RawModule,
    make_template,
    public_key_of,
    ulong,
)
from pkcs11 import Attribute, CertificateType, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from vsc_provider.ck import constants as C


@pytest.fixture(scope="module")
def raw(card_env: CardEnv, module_path: str) -> RawModule:
    return RawModule(module_path)


def _certificate_for(public_key: object, cn: str) -> x509.Certificate:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(0x1234567890ABCDEF)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def ec_identity(session: pkcs11.Session) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey, pkcs11.Certificate]:
    pub, priv = session.generate_keypair(
        KeyType.EC,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
        label="identity",
        store=True,
    )
    cert = _certificate_for(public_key_of(pub), "Alice")
    cert_obj = session.create_object(
        {
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True,
            Attribute.LABEL: "identity",
            Attribute.ID: pub[Attribute.ID],
            Attribute.VALUE: cert.public_bytes(serialization.Encoding.DER),
        }
    )
    return pub, priv, cert_obj


def test_certificate_and_keys_share_cka_id(
    session: pkcs11.Session, ec_identity: tuple[pkcs11.PublicKey, pkcs11.PrivateKey, pkcs11.Certificate]
) -> None:
    pub, priv, cert = ec_identity
    key_id = pub[Attribute.ID]
    assert len(key_id) == 20
    assert priv[Attribute.ID] == cert[Attribute.ID] == key_id
    classes = sorted(o[Attribute.CLASS] for o in session.get_objects({Attribute.ID: key_id}))
    assert classes == sorted([ObjectClass.CERTIFICATE, ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY])
    assert pub[CKA_PUBLIC_KEY_INFO] == priv[CKA_PUBLIC_KEY_INFO] == cert[CKA_PUBLIC_KEY_INFO]


def test_certificate_attributes(ec_identity: tuple[pkcs11.PublicKey, pkcs11.PrivateKey, pkcs11.Certificate]) -> None:
    _, _, cert_obj = ec_identity
    cert = x509.load_der_x509_certificate(cert_obj[Attribute.VALUE])
    assert cert_obj[Attribute.SUBJECT] == cert.subject.public_bytes()
    assert cert_obj[Attribute.ISSUER] == cert.issuer.public_bytes()
    assert cert_obj[Attribute.SERIAL_NUMBER] == bytes.fromhex("02081234567890abcdef")  # DER INTEGER
    assert cert_obj[CKA_CERTIFICATE_CATEGORY] == ulong(1)  # token user: its private key is on the card
    assert not cert_obj[Attribute.PRIVATE]


def test_ec_point_is_der(ec_identity: tuple[pkcs11.PublicKey, pkcs11.PrivateKey, pkcs11.Certificate]) -> None:
    pub, _, _ = ec_identity
    point = public_key_of(pub).public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert pub[Attribute.EC_POINT] == b"\x04\x41" + point
    assert pub[Attribute.EC_PARAMS] == encode_named_curve_parameters("secp256r1")


def test_private_key_attributes(
    session: pkcs11.Session, ec_identity: tuple[pkcs11.PublicKey, pkcs11.PrivateKey, pkcs11.Certificate]
) -> None:
    _, priv, _ = ec_identity
    assert priv[Attribute.SENSITIVE] and not priv[Attribute.EXTRACTABLE]
    assert priv[Attribute.ALWAYS_SENSITIVE] and priv[Attribute.NEVER_EXTRACTABLE]
    assert priv[Attribute.LOCAL] and priv[Attribute.PRIVATE]
    assert priv[Attribute.KEY_GEN_MECHANISM] == Mechanism.EC_KEY_PAIR_GEN
    with pytest.raises(pkcs11.AttributeSensitive):
        _ = priv[Attribute.VALUE]
    with pytest.raises(pkcs11.AttributeReadOnly):
        priv[Attribute.SENSITIVE] = False
    with pytest.raises(pkcs11.AttributeReadOnly):
        priv[Attribute.EXTRACTABLE] = True
    rsa_pub, rsa_priv = session.generate_keypair(KeyType.RSA, 2048)
    for attr in (Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.COEFFICIENT):
        with pytest.raises(pkcs11.AttributeSensitive):
            _ = rsa_priv[attr]
    assert rsa_priv[Attribute.MODULUS] == rsa_pub[Attribute.MODULUS]


def test_imported_private_key_is_sensitive_but_not_always(session: pkcs11.Session) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    obj = session.create_object(
        {
            Attribute.CLASS: ObjectClass.PRIVATE_KEY,
            Attribute.KEY_TYPE: KeyType.EC,
            Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1"),
            Attribute.VALUE: key.private_numbers().private_value.to_bytes(32, "big"),
            Attribute.SENSITIVE: False,
            Attribute.EXTRACTABLE: True,
            Attribute.SIGN: True,
        }
    )
    assert obj[Attribute.SENSITIVE] and not obj[Attribute.EXTRACTABLE]
    assert not obj[Attribute.ALWAYS_SENSITIVE] and not obj[Attribute.LOCAL]
    with pytest.raises(pkcs11.AttributeSensitive):
        _ = obj[Attribute.VALUE]
    digest = b"\x11" * 32
    sig = obj.sign(digest, mechanism=Mechanism.ECDSA)
    from cryptography.hazmat.primitives.asymmetric import utils

    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    key.public_key().verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_copy_set_destroy_and_size(session: pkcs11.Session) -> None:
    data = session.create_object(
        {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.LABEL: "original",
            Attribute.VALUE: b"payload",
            Attribute.PRIVATE: False,
        }
    )
    copy = data.copy({Attribute.LABEL: "copy"})
    assert copy[Attribute.LABEL] == "copy" and copy[Attribute.VALUE] == b"payload"
    copy[Attribute.LABEL] = "renamed"
    assert copy[Attribute.LABEL] == "renamed"
    assert data[Attribute.LABEL] == "original"
    copy.destroy()
    assert {o[Attribute.LABEL] for o in session.get_objects({Attribute.CLASS: ObjectClass.DATA})} >= {"original"}
    assert "renamed" not in {o[Attribute.LABEL] for o in session.get_objects({Attribute.CLASS: ObjectClass.DATA})}
    with pytest.raises(pkcs11.ObjectHandleInvalid):
        _ = copy[Attribute.LABEL]


def _raw_session(raw: RawModule, card_env: CardEnv) -> int:
    return raw.open(int(card_env.slot().slot_id))


def test_wrong_templates(raw: RawModule, card_env: CardEnv, session: pkcs11.Session) -> None:
    h = _raw_session(raw, card_env)
    cases = [
        ([(C.CKA_LABEL, b"no class")], C.CKR_TEMPLATE_INCOMPLETE),
        ([(C.CKA_CLASS, b"\x00\x00\x00\x00")], C.CKR_ATTRIBUTE_VALUE_INVALID),  # CK_ULONG is 8 bytes
        ([(C.CKA_CLASS, ulong(C.CKO_DATA)), (C.CKA_TOKEN, b"\x01\x00")], C.CKR_ATTRIBUTE_VALUE_INVALID),
        ([(C.CKA_CLASS, ulong(C.CKO_DATA)), (0x7FFF0123, b"x")], C.CKR_ATTRIBUTE_TYPE_INVALID),
        ([(C.CKA_CLASS, ulong(C.CKO_SECRET_KEY)), (C.CKA_KEY_TYPE, ulong(C.CKK_AES))], C.CKR_TEMPLATE_INCOMPLETE),
        (
            [(C.CKA_CLASS, ulong(C.CKO_SECRET_KEY)), (C.CKA_KEY_TYPE, ulong(C.CKK_AES)), (C.CKA_VALUE, b"short")],
            C.CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        ([(C.CKA_CLASS, ulong(C.CKO_CERTIFICATE)), (C.CKA_VALUE, b"not DER")], C.CKR_ATTRIBUTE_VALUE_INVALID),
    ]
    for pairs, expected in cases:
        attrs, keep = make_template(pairs)
        handle = ctypes.c_ulong()
        rv = raw.C_CreateObject(h, attrs, len(pairs), ctypes.byref(handle))
        assert rv == expected, (pairs, hex(rv))
        del keep
    # a non-zero length with a NULL value pointer
    attrs = (type(make_template([])[0][0]) * 1)()
    attrs[0].type = C.CKA_CLASS
    attrs[0].pValue = None
    attrs[0].ulValueLen = 8
    assert raw.C_CreateObject(h, attrs, 1, ctypes.byref(ctypes.c_ulong())) == C.CKR_ARGUMENTS_BAD
    # key generation templates
    mech = (ctypes.c_ulong * 3)(C.CKM_AES_KEY_GEN, 0, 0)
    for pairs, expected in (
        ([], C.CKR_TEMPLATE_INCOMPLETE),
        ([(C.CKA_VALUE_LEN, ulong(20))], C.CKR_KEY_SIZE_RANGE),
        ([(C.CKA_VALUE_LEN, ulong(16)), (C.CKA_CLASS, ulong(C.CKO_PRIVATE_KEY))], C.CKR_TEMPLATE_INCONSISTENT),
    ):
        attrs, _keep = make_template(pairs)
        rv = raw.C_GenerateKey(h, mech, attrs, len(pairs), ctypes.byref(ctypes.c_ulong()))
        assert rv == expected, (pairs, hex(rv))
    raw.C_CloseSession(h)


def test_get_attribute_value_conventions(
    raw: RawModule, card_env: CardEnv, ec_identity: tuple[pkcs11.PublicKey, pkcs11.PrivateKey, pkcs11.Certificate]
) -> None:
    pub, _priv, _ = ec_identity
    h = _raw_session(raw, card_env)
    unavailable = ctypes.c_ulong(-1).value
    attrs, keep = make_template([(C.CKA_LABEL, b""), (0x7FFF0123, b""), (C.CKA_EC_POINT, b"")])
    assert raw.C_GetAttributeValue(h, pub.handle, attrs, 3) == C.CKR_ATTRIBUTE_TYPE_INVALID
    assert attrs[0].ulValueLen == len(b"identity")
    assert attrs[1].ulValueLen == unavailable
    assert attrs[2].ulValueLen == 67
    short = ctypes.create_string_buffer(4)
    attrs[2].pValue = ctypes.cast(short, ctypes.c_void_p)
    attrs[2].ulValueLen = 4
    assert raw.C_GetAttributeValue(h, pub.handle, ctypes.byref(attrs[2]), 1) == C.CKR_BUFFER_TOO_SMALL
    assert attrs[2].ulValueLen == unavailable
    assert raw.C_GetAttributeValue(h, 0x7777777, attrs, 1) == C.CKR_OBJECT_HANDLE_INVALID
    assert raw.C_GetAttributeValue(0x7777777, pub.handle, attrs, 1) == C.CKR_SESSION_HANDLE_INVALID
    del keep
    raw.C_CloseSession(h)


def test_find_objects_with_any_template(
    session: pkcs11.Session, ec_identity: tuple[pkcs11.PublicKey, pkcs11.PrivateKey, pkcs11.Certificate]
) -> None:
    pub, _, _ = ec_identity
    found = list(
        session.get_objects({Attribute.KEY_TYPE: KeyType.EC, Attribute.SIGN: True, Attribute.LABEL: "identity"})
    )
    assert [o[Attribute.CLASS] for o in found] == [ObjectClass.PRIVATE_KEY]
    found = list(session.get_objects({Attribute.EC_POINT: pub[Attribute.EC_POINT]}))
    assert len(found) == 2
    assert list(session.get_objects({Attribute.LABEL: "no such label"})) == []


def test_read_only_session_cannot_change_token_objects(
    card_env: CardEnv, ec_identity: tuple[pkcs11.PublicKey, pkcs11.PrivateKey, pkcs11.Certificate]
) -> None:
    pub, _, _cert = ec_identity
    with card_env.token().open() as ro:
        (ro_pub,) = list(ro.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: pub[Attribute.ID]}))
        with pytest.raises(pkcs11.SessionReadOnly):
            ro_pub[Attribute.LABEL] = "renamed"
        with pytest.raises(pkcs11.SessionReadOnly):
            ro_pub.destroy()
    assert pub[Attribute.LABEL] == "identity"
