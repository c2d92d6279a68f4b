"""P-521 (ECDSA and ECDH) and Ed448 (CKM_EDDSA) through the module, checked with `cryptography`."""

from __future__ import annotations

import ctypes

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, utils
from p11_support import CK_MECHANISM, CardEnv, RawModule, public_key_of
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from vsc_provider.ck import constants as C
from vsc_provider.token.curves import ED448_OID
from vsc_provider.token.ec_params import oid_der

MESSAGE = b"curves beyond P-384 and Ed25519"


def test_p521_ecdsa_and_ecdh(session: pkcs11.Session) -> None:
    pub, priv = session.generate_keypair(
        KeyType.EC,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp521r1")},
        store=False,
    )
    key = public_key_of(pub)
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp521r1"
    sig = priv.sign(MESSAGE, mechanism=Mechanism.ECDSA_SHA512)
    assert len(sig) == 132
    half = len(sig) // 2
    der = utils.encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
    key.verify(der, MESSAGE, ec.ECDSA(hashes.SHA512()))
    assert pub.verify(MESSAGE, sig, mechanism=Mechanism.ECDSA_SHA512)

    peer = ec.generate_private_key(ec.SECP521R1())
    point = peer.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    shared = priv.derive_key(
        KeyType.GENERIC_SECRET,
        66 * 8,
        mechanism_param=(pkcs11.KDF.NULL, None, point),
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    assert shared[Attribute.VALUE] == peer.exchange(ec.ECDH(), key)


def test_ed448_sign_and_verify(session: pkcs11.Session, card_env: CardEnv, module_path: str) -> None:
    pub, priv = session.generate_keypair(
        KeyType.EC_EDWARDS,
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: oid_der(ED448_OID)},
        store=False,
    )
    key = public_key_of(pub)
    assert isinstance(key, ed448.Ed448PublicKey)
    assert pub[Attribute.EC_PARAMS] == oid_der(ED448_OID)
    sig = priv.sign(MESSAGE, mechanism=Mechanism.EDDSA)
    assert len(sig) == 114
    key.verify(sig, MESSAGE)
    assert pub.verify(MESSAGE, sig, mechanism=Mechanism.EDDSA)
    assert not pub.verify(MESSAGE + b"!", sig, mechanism=Mechanism.EDDSA)

    # Ed448ph and Ed448 with a context: `cryptography` offers neither, so the parameter is refused clearly.
    class CK_EDDSA_PARAMS(ctypes.Structure):
        _fields_ = [("phFlag", ctypes.c_ubyte), ("ulContextDataLen", ctypes.c_ulong), ("pContextData", ctypes.c_void_p)]

    raw = RawModule(module_path)
    h = raw.open(int(card_env.slot().slot_id))
    context = ctypes.create_string_buffer(b"ctx", 3)
    for ph, ctx_len in ((1, 0), (0, 3)):
        params = CK_EDDSA_PARAMS(ph, ctx_len, ctypes.cast(context, ctypes.c_void_p) if ctx_len else None)
        mech = CK_MECHANISM(C.CKM_EDDSA, ctypes.cast(ctypes.byref(params), ctypes.c_void_p), ctypes.sizeof(params))
        assert raw.C_SignInit(h, ctypes.byref(mech), priv.handle) == C.CKR_MECHANISM_PARAM_INVALID
        assert raw.C_VerifyInit(h, ctypes.byref(mech), pub.handle) == C.CKR_MECHANISM_PARAM_INVALID
    pure = CK_EDDSA_PARAMS(0, 0, None)
    mech = CK_MECHANISM(C.CKM_EDDSA, ctypes.cast(ctypes.byref(pure), ctypes.c_void_p), ctypes.sizeof(pure))
    assert raw.C_SignInit(h, ctypes.byref(mech), priv.handle) == C.CKR_OK
    out = (ctypes.c_ubyte * 114)()
    n = ctypes.c_ulong(114)
    assert raw.C_Sign(h, MESSAGE, len(MESSAGE), out, ctypes.byref(n)) == C.CKR_OK
    key.verify(bytes(out), MESSAGE)
    assert raw.C_CloseSession(h) == C.CKR_OK


def test_ed448_key_import(session: pkcs11.Session) -> None:
    private = ed448.Ed448PrivateKey.generate()
    raw_priv = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    imported = session.create_object(
        {
            Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
            Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
            Attribute.EC_PARAMS: oid_der(ED448_OID),
            Attribute.VALUE: raw_priv,
            Attribute.SIGN: True,
        }
    )
    private.public_key().verify(imported.sign(MESSAGE, mechanism=Mechanism.EDDSA), MESSAGE)


def test_ecdh_with_a_bare_point_that_looks_like_der(session: pkcs11.Session) -> None:
    """A bare P-384 point whose X starts with 0x5F reads as a DER OCTET STRING of 95 bytes (04 5F ...):
    the derivation used to take the wrong bytes, about once in 256 runs of the ECDH test."""
    pub, priv = session.generate_keypair(
        KeyType.EC,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")},
        store=False,
    )
    while True:
        peer = ec.generate_private_key(ec.SECP384R1())
        point = peer.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        if point[1] == len(point) - 2:
            break
    shared = priv.derive_key(
        KeyType.GENERIC_SECRET,
        48 * 8,
        mechanism_param=(pkcs11.KDF.NULL, None, point),
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    assert shared[Attribute.VALUE] == peer.exchange(ec.ECDH(), public_key_of(pub))
