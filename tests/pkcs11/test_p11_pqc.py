"""Post-quantum keys (PKCS#11 3.2) through the built module: ML-DSA and ML-KEM keys made on the card, used from
python-pkcs11 (through the 3.2 interface for C_EncapsulateKey/C_DecapsulateKey) and checked with
`cryptography` on the other side; the 3.2 function list itself through ctypes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from p11_support import (
    CK_INTERFACE,
    CK_MECHANISM,
    CK_ULONG,
    CK_VERSION,
    CKA_PUBLIC_KEY_INFO,
    SIGNATURES,
    USER_PIN,
    CardEnv,
    RawModule,
    make_template,
    reinitialize,
    ulong,
)
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import MLDSAParameterSet, MLKEMParameterSet

from vsc_provider.ck import constants as C

ML_DSA = {
    MLDSAParameterSet.ML_DSA_44: (mldsa.MLDSA44PublicKey, 2420),
    MLDSAParameterSet.ML_DSA_65: (mldsa.MLDSA65PublicKey, 3309),
    MLDSAParameterSet.ML_DSA_87: (mldsa.MLDSA87PublicKey, 4627),
}
ML_KEM = {
    MLKEMParameterSet.ML_KEM_768: (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, 1088),
    MLKEMParameterSet.ML_KEM_1024: (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey, 1568),
}
# The functions CK_FUNCTION_LIST_3_2 adds after the 3.0 list, in the order of the 3.2 header (pkcs11f.h).
V32_NAMES = [
    "C_EncapsulateKey",
    "C_DecapsulateKey",
    "C_VerifySignatureInit",
    "C_VerifySignature",
    "C_VerifySignatureUpdate",
    "C_VerifySignatureFinal",
    "C_GetSessionValidationFlags",
    "C_AsyncComplete",
    "C_AsyncGetID",
    "C_AsyncJoin",
    "C_WrapKeyAuthenticated",
    "C_UnwrapKeyAuthenticated",
]
V30_COUNT = 24  # C_GetInterfaceList ... C_MessageVerifyFinal
EXTRACTABLE = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}


@pytest.fixture
def session(card_env: CardEnv) -> Iterator[pkcs11.Session]:
    with card_env.token().open(rw=True, user_pin=USER_PIN) as s:
        yield s


@pytest.fixture(scope="module")
def raw(card_env: CardEnv, module_path: str) -> RawModule:
    return RawModule(module_path)


def _ml_dsa(session: pkcs11.Session, pset: int, **kw: object) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    return session.generate_keypair(KeyType.ML_DSA, public_template={Attribute.PARAMETER_SET: pset}, **kw)


def _ml_kem(session: pkcs11.Session, pset: int, **kw: object) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    return session.generate_keypair(KeyType.ML_KEM, public_template={Attribute.PARAMETER_SET: pset}, **kw)


class CK_SIGN_ADDITIONAL_CONTEXT(ctypes.Structure):
    _fields_ = [("hedgeVariant", CK_ULONG), ("pContext", ctypes.c_void_p), ("ulContextLen", CK_ULONG)]


def _context_param(hedge: int, context: bytes) -> tuple[bytes, object]:
    """The parameter as bytes for python-pkcs11, and the buffer its pointer refers to (keep it alive)."""
    buf = ctypes.create_string_buffer(context, max(1, len(context)))
    param = CK_SIGN_ADDITIONAL_CONTEXT(hedge, ctypes.cast(buf, ctypes.c_void_p).value, len(context))
    return bytes(param), buf


# --- ML-DSA ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pset", list(ML_DSA))
def test_ml_dsa_signature_verifies_in_cryptography(session: pkcs11.Session, pset: int) -> None:
    public_cls, sig_len = ML_DSA[pset]
    pub, priv = _ml_dsa(session, pset, store=True, label=f"mldsa-{int(pset)}")
    assert priv.key_type == KeyType.ML_DSA and pub.key_type == KeyType.ML_DSA
    assert pub[Attribute.PARAMETER_SET] == priv[Attribute.PARAMETER_SET] == pset
    assert pub[Attribute.KEY_GEN_MECHANISM] == Mechanism.ML_DSA_KEY_PAIR_GEN
    assert pub[Attribute.ID] == priv[Attribute.ID] and priv[Attribute.LOCAL]

    message = b"post-quantum message"
    signature = priv.sign(message)
    assert len(signature) == sig_len
    from_value = public_cls.from_public_bytes(pub[Attribute.VALUE])
    from_value.verify(signature, message)
    spki = serialization.load_der_public_key(pub[CKA_PUBLIC_KEY_INFO])
    assert isinstance(spki, public_cls)
    spki.verify(signature, message)
    assert priv[CKA_PUBLIC_KEY_INFO] == pub[CKA_PUBLIC_KEY_INFO]
    # and through the module, including a tampered signature and multi-part signing
    assert pub.verify(message, signature)
    assert not pub.verify(message + b"!", signature)
    parts = priv.sign(iter([b"post-", b"quantum ", b"message"]))
    from_value.verify(parts, message)


def test_ml_dsa_private_key_stays_secret(session: pkcs11.Session) -> None:
    _, priv = _ml_dsa(session, MLDSAParameterSet.ML_DSA_44)
    assert priv[Attribute.SENSITIVE] and not priv[Attribute.EXTRACTABLE]
    for attr in (Attribute.SEED, Attribute.VALUE):
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            priv[attr]


def test_ml_dsa_context_and_hedging(session: pkcs11.Session) -> None:
    pub, priv = _ml_dsa(session, MLDSAParameterSet.ML_DSA_65)
    public = mldsa.MLDSA65PublicKey.from_public_bytes(pub[Attribute.VALUE])
    message = b"with a context"
    for hedge in (C.CKH_HEDGE_PREFERRED, C.CKH_HEDGE_REQUIRED):
        param, keep = _context_param(hedge, b"app-context")
        signature = priv.sign(message, mechanism=Mechanism.ML_DSA, mechanism_param=param)
        public.verify(signature, message, b"app-context")
        with pytest.raises(InvalidSignature):
            public.verify(signature, message)  # the context is part of what was signed
        assert pub.verify(message, signature, mechanism=Mechanism.ML_DSA, mechanism_param=param)
        assert not pub.verify(message, signature)
        del keep
    # `cryptography` signs hedged only: a caller that requires determinism is told so, not given hedged.
    param, keep = _context_param(C.CKH_DETERMINISTIC_REQUIRED, b"")
    with pytest.raises(pkcs11.exceptions.MechanismParamInvalid):
        priv.sign(message, mechanism=Mechanism.ML_DSA, mechanism_param=param)
    param, keep = _context_param(7, b"")
    with pytest.raises(pkcs11.exceptions.MechanismParamInvalid):
        priv.sign(message, mechanism=Mechanism.ML_DSA, mechanism_param=param)
    param, keep = _context_param(C.CKH_HEDGE_PREFERRED, b"x" * 256)
    with pytest.raises(pkcs11.exceptions.MechanismParamInvalid):
        priv.sign(message, mechanism=Mechanism.ML_DSA, mechanism_param=param)
    with pytest.raises(pkcs11.exceptions.MechanismParamInvalid):
        priv.sign(message, mechanism=Mechanism.ML_DSA, mechanism_param=b"\x00" * 5)
    del keep


def test_ml_dsa_key_survives_the_store_and_imports_by_seed(card_env: CardEnv) -> None:
    seed = bytes(range(32))
    local = mldsa.MLDSA87PrivateKey.from_seed_bytes(seed)
    with card_env.token().open(rw=True, user_pin=USER_PIN) as session:
        imported = session.create_object(
            {
                Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                Attribute.KEY_TYPE: KeyType.ML_DSA,
                Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_87,
                Attribute.SEED: seed,
                Attribute.TOKEN: True,
                Attribute.LABEL: "imported-mldsa",
            }
        )
        assert imported[Attribute.PARAMETER_SET] == MLDSAParameterSet.ML_DSA_87
    for stored in card_env.home.rglob("store.sqlite*"):  # sealed like every private key (WAL, audit journals)
        assert not stored.is_file() or seed not in stored.read_bytes()
    # A fresh C_Initialize loads the key from the store again.
    reinitialize(card_env.lib)
    with card_env.token().open(rw=True, user_pin=USER_PIN) as s:
        key = s.get_key(label="imported-mldsa", object_class=ObjectClass.PRIVATE_KEY)
        local.public_key().verify(key.sign(b"after reload"), b"after reload")
        with pytest.raises(pkcs11.exceptions.AttributeValueInvalid):
            s.create_object(
                {
                    Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                    Attribute.KEY_TYPE: KeyType.ML_DSA,
                    Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_87,
                    Attribute.SEED: seed[:31],
                }
            )


def test_parameter_sets_refused_with_the_right_code(raw: RawModule, card_env: CardEnv, session: pkcs11.Session) -> None:
    h = raw.open(int(card_env.slot().slot_id))
    try:
        for mech, pset, want in (
            (C.CKM_ML_KEM_KEY_PAIR_GEN, C.CKP_ML_KEM_512, C.CKR_PARAMETER_SET_NOT_SUPPORTED),
            (C.CKM_ML_KEM_KEY_PAIR_GEN, 9, C.CKR_ATTRIBUTE_VALUE_INVALID),
            (C.CKM_ML_DSA_KEY_PAIR_GEN, 4, C.CKR_ATTRIBUTE_VALUE_INVALID),
            (C.CKM_ML_DSA_KEY_PAIR_GEN, None, C.CKR_TEMPLATE_INCOMPLETE),
        ):
            pub_t, keep1 = make_template([] if pset is None else [(C.CKA_PARAMETER_SET, ulong(pset))])
            priv_t, keep2 = make_template([])
            hp, hk = CK_ULONG(), CK_ULONG()
            m = CK_MECHANISM(mech, None, 0)
            rv = raw.C_GenerateKeyPair(
                h, ctypes.byref(m), pub_t, 0 if pset is None else 1, priv_t, 0, ctypes.byref(hp), ctypes.byref(hk)
            )
            assert rv == want, (mech, pset, hex(rv))
            del keep1, keep2
    finally:
        raw.C_CloseSession(h)


# --- ML-KEM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pset", list(ML_KEM))
def test_ml_kem_secret_from_cryptography_decapsulated_on_the_card(session: pkcs11.Session, pset: int) -> None:
    _, public_cls, ct_len = ML_KEM[pset]
    pub, priv = _ml_kem(session, pset, store=True)
    assert pub[Attribute.ENCAPSULATE] and priv[Attribute.DECAPSULATE]
    assert not pub[Attribute.VERIFY] and not priv[Attribute.SIGN]
    public = public_cls.from_public_bytes(pub[Attribute.VALUE])
    assert serialization.load_der_public_key(pub[CKA_PUBLIC_KEY_INFO]).public_bytes_raw() == pub[Attribute.VALUE]
    secret, ciphertext = public.encapsulate()
    assert len(ciphertext) == ct_len
    on_card = priv.decapsulate_key(ciphertext, KeyType.GENERIC_SECRET, template=EXTRACTABLE)
    assert on_card[Attribute.VALUE] == secret
    # The same secret as a (non-extractable) AES key: the card encrypts, `cryptography` decrypts.
    aes = priv.decapsulate_key(ciphertext, KeyType.AES)
    assert aes[Attribute.VALUE_LEN] == 32
    nonce = bytes(12)
    gcm = pkcs11.GCMParams(nonce, None, 128)
    sealed = aes.encrypt(b"secret payload", mechanism=Mechanism.AES_GCM, mechanism_param=gcm)
    assert AESGCM(secret).decrypt(nonce, sealed, None) == b"secret payload"


@pytest.mark.parametrize("pset", list(ML_KEM))
def test_ml_kem_card_encapsulates_for_a_cryptography_key(session: pkcs11.Session, pset: int) -> None:
    private_cls, _, ct_len = ML_KEM[pset]
    local = private_cls.generate()
    pub = session.create_object(
        {
            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.KEY_TYPE: KeyType.ML_KEM,
            Attribute.PARAMETER_SET: pset,
            Attribute.VALUE: local.public_key().public_bytes_raw(),
            Attribute.ENCAPSULATE: True,
        }
    )
    ciphertext, key = pub.encapsulate_key(KeyType.GENERIC_SECRET, template=EXTRACTABLE)
    assert len(ciphertext) == ct_len
    assert key[Attribute.VALUE] == local.decapsulate(ciphertext)
    short_ct, short = pub.encapsulate_key(KeyType.GENERIC_SECRET, key_length=128, template=EXTRACTABLE)
    assert short[Attribute.VALUE] == local.decapsulate(short_ct)[:16]


def test_ml_kem_card_to_card_and_refusals(session: pkcs11.Session) -> None:
    pub, priv = _ml_kem(session, MLKEMParameterSet.ML_KEM_768)
    ciphertext, mine = pub.encapsulate_key(KeyType.GENERIC_SECRET, template=EXTRACTABLE)
    theirs = priv.decapsulate_key(ciphertext, KeyType.GENERIC_SECRET, template=EXTRACTABLE)
    assert mine[Attribute.VALUE] == theirs[Attribute.VALUE]
    with pytest.raises(pkcs11.exceptions.WrappedKeyLenRange):
        priv.decapsulate_key(ciphertext[:-1], KeyType.GENERIC_SECRET)
    with pytest.raises(pkcs11.exceptions.TemplateInconsistent):
        pub.encapsulate_key(KeyType.GENERIC_SECRET, key_length=8 * 33)
    dsa_pub, _ = _ml_dsa(session, MLDSAParameterSet.ML_DSA_44)
    assert not dsa_pub[Attribute.ENCAPSULATE]


def test_encapsulate_length_query_and_short_buffer_make_no_key(
    raw: RawModule, card_env: CardEnv, session: pkcs11.Session
) -> None:
    pub, _ = _ml_kem(session, MLKEMParameterSet.ML_KEM_1024)
    table = _table(raw, (3, 2))
    encapsulate = ctypes.CFUNCTYPE(
        CK_ULONG,
        CK_ULONG,
        ctypes.c_void_p,
        CK_ULONG,
        ctypes.c_void_p,
        CK_ULONG,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    )(_entry(table, "C_EncapsulateKey"))
    h = raw.open(int(card_env.slot().slot_id))
    try:
        before = len(raw.find(h, [(C.CKA_CLASS, ulong(C.CKO_SECRET_KEY))]))
        m = CK_MECHANISM(C.CKM_ML_KEM, None, 0)
        tmpl, keep = make_template([(C.CKA_CLASS, ulong(C.CKO_SECRET_KEY))])
        n, hk = CK_ULONG(), CK_ULONG(0)
        assert encapsulate(h, ctypes.byref(m), pub.handle, tmpl, 1, None, ctypes.byref(n), ctypes.byref(hk)) == 0
        assert n.value == 1568 and hk.value == 0
        small = CK_ULONG(100)
        buf = ctypes.create_string_buffer(1568)
        rv = encapsulate(h, ctypes.byref(m), pub.handle, tmpl, 1, buf, ctypes.byref(small), ctypes.byref(hk))
        assert rv == C.CKR_BUFFER_TOO_SMALL and small.value == 1568 and hk.value == 0
        assert len(raw.find(h, [(C.CKA_CLASS, ulong(C.CKO_SECRET_KEY))])) == before
        rv = encapsulate(h, ctypes.byref(m), pub.handle, tmpl, 1, buf, ctypes.byref(n), ctypes.byref(hk))
        assert rv == 0 and hk.value != 0 and n.value == 1568
        assert encapsulate(h, ctypes.byref(m), pub.handle, tmpl, 1, buf, None, ctypes.byref(hk)) == C.CKR_ARGUMENTS_BAD
        del keep
    finally:
        raw.C_CloseSession(h)


# --- the 3.2 interface -------------------------------------------------------------------------


def _table(raw: RawModule, version: tuple[int, int] | None) -> int:
    out = ctypes.c_void_p()
    v = CK_VERSION(*version) if version else None
    rv = raw.dll.C_GetInterface(b"PKCS 11", ctypes.byref(v) if v else None, ctypes.byref(out), 0)
    assert rv == 0 and out.value
    return int(CK_INTERFACE.from_address(out.value).pFunctionList)


def _entry(table: int, name: str) -> int:
    index = len(SIGNATURES) + V30_COUNT + V32_NAMES.index(name)
    return int(ctypes.c_void_p.from_address(table + 8 * (1 + index)).value or 0)


def test_interfaces_3_0_first_then_3_2(raw: RawModule, card_env: CardEnv) -> None:
    count = CK_ULONG()
    assert raw.dll.C_GetInterfaceList(None, ctypes.byref(count)) == 0
    listing = (CK_INTERFACE * count.value)()
    assert raw.dll.C_GetInterfaceList(listing, ctypes.byref(count)) == 0
    versions = [
        (CK_VERSION.from_address(i.pFunctionList).major, CK_VERSION.from_address(i.pFunctionList).minor)
        for i in listing
    ]
    assert versions[0] == (3, 0)  # what a caller asking for no version gets, as before 3.2
    assert sorted(versions) == [(2, 40), (3, 0), (3, 2)]
    default = _table(raw, None)
    assert (CK_VERSION.from_address(default).major, CK_VERSION.from_address(default).minor) == (3, 0)
    t32 = _table(raw, (3, 2))
    assert (CK_VERSION.from_address(t32).major, CK_VERSION.from_address(t32).minor) == (3, 2)
    # The 3.2 table repeats the 3.0 one, then has every 3.2 function; the ones not offered say so.
    t30 = _table(raw, (3, 0))
    words = 1 + len(SIGNATURES) + V30_COUNT
    for i in range(1, words):
        assert ctypes.c_void_p.from_address(t30 + 8 * i).value == ctypes.c_void_p.from_address(t32 + 8 * i).value
    assert all(_entry(t32, name) for name in V32_NAMES)
    h = raw.open(int(card_env.slot().slot_id))
    try:
        final = ctypes.CFUNCTYPE(CK_ULONG, CK_ULONG)(_entry(t32, "C_VerifySignatureFinal"))
        assert final(h) == C.CKR_FUNCTION_NOT_SUPPORTED
        flags = ctypes.CFUNCTYPE(CK_ULONG, CK_ULONG, CK_ULONG, ctypes.c_void_p)(
            _entry(t32, "C_GetSessionValidationFlags")
        )
        assert flags(h, 0, None) == C.CKR_FUNCTION_NOT_SUPPORTED
    finally:
        raw.C_CloseSession(h)


def test_mechanisms_listed(card_env: CardEnv) -> None:
    slot = card_env.slot()
    mechs = slot.get_mechanisms()
    for m in (Mechanism.ML_DSA_KEY_PAIR_GEN, Mechanism.ML_DSA, Mechanism.ML_KEM_KEY_PAIR_GEN, Mechanism.ML_KEM):
        assert m in mechs
    info = slot.get_mechanism_info(Mechanism.ML_KEM)
    assert int(info.flags) & (C.CKF_ENCAPSULATE | C.CKF_DECAPSULATE) == C.CKF_ENCAPSULATE | C.CKF_DECAPSULATE
    assert int(slot.get_mechanism_info(Mechanism.ML_DSA).flags) & C.CKF_SIGN


def test_kem_calls_refuse_bad_input(raw: RawModule, card_env: CardEnv, session: pkcs11.Session) -> None:
    pub, priv = _ml_kem(session, MLKEMParameterSet.ML_KEM_768)
    dsa_pub, dsa_priv = _ml_dsa(session, MLDSAParameterSet.ML_DSA_44)
    table = _table(raw, (3, 2))
    args = (CK_ULONG, CK_ULONG, ctypes.c_void_p, CK_ULONG, ctypes.c_void_p, CK_ULONG)
    encapsulate = ctypes.CFUNCTYPE(*args, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
        _entry(table, "C_EncapsulateKey")
    )
    decapsulate = ctypes.CFUNCTYPE(*args, ctypes.c_void_p, CK_ULONG, ctypes.c_void_p)(_entry(table, "C_DecapsulateKey"))
    kem = CK_MECHANISM(C.CKM_ML_KEM, None, 0)
    h = raw.open(int(card_env.slot().slot_id))
    n, hk = CK_ULONG(), CK_ULONG()
    buf = ctypes.create_string_buffer(2000)
    try:

        def enc(mech: object, key: int) -> int:
            n.value = 2000
            return int(encapsulate(h, mech, key, None, 0, buf, ctypes.byref(n), ctypes.byref(hk)))

        def dec(mech: object, key: int, data: bytes | None, length: int) -> int:
            return int(decapsulate(h, mech, key, None, 0, data, length, ctypes.byref(hk)))

        assert enc(None, pub.handle) == C.CKR_ARGUMENTS_BAD
        assert enc(ctypes.byref(kem), 0x7FFF0000) == C.CKR_KEY_HANDLE_INVALID
        assert enc(ctypes.byref(CK_MECHANISM(C.CKM_RSA_PKCS, None, 0)), pub.handle) == C.CKR_MECHANISM_INVALID
        assert enc(ctypes.byref(kem), priv.handle) == C.CKR_KEY_TYPE_INCONSISTENT
        assert enc(ctypes.byref(kem), dsa_pub.handle) == C.CKR_KEY_FUNCTION_NOT_PERMITTED
        param = ctypes.create_string_buffer(8)
        with_param = CK_MECHANISM(C.CKM_ML_KEM, ctypes.cast(param, ctypes.c_void_p), 8)
        assert enc(ctypes.byref(with_param), pub.handle) == C.CKR_MECHANISM_PARAM_INVALID
        assert dec(ctypes.byref(kem), priv.handle, None, 1088) == C.CKR_ARGUMENTS_BAD
        assert dec(ctypes.byref(kem), pub.handle, bytes(1088), 1088) == C.CKR_KEY_TYPE_INCONSISTENT
        assert dec(ctypes.byref(kem), dsa_priv.handle, bytes(1088), 1088) == C.CKR_KEY_FUNCTION_NOT_PERMITTED
        # ML-KEM keys do not sign, ML-DSA keys sign only with CKM_ML_DSA
        assert raw.C_SignInit(h, ctypes.byref(CK_MECHANISM(C.CKM_ML_DSA, None, 0)), priv.handle) == (
            C.CKR_KEY_FUNCTION_NOT_PERMITTED
        )
        sha = CK_MECHANISM(C.CKM_SHA256_RSA_PKCS, None, 0)
        assert raw.C_SignInit(h, ctypes.byref(sha), dsa_priv.handle) == C.CKR_KEY_TYPE_INCONSISTENT
        # A forged ciphertext of the right length decapsulates (implicit rejection) to a different secret.
        ciphertext, mine = pub.encapsulate_key(KeyType.GENERIC_SECRET, template=EXTRACTABLE)
        forged = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
        other = priv.decapsulate_key(forged, KeyType.GENERIC_SECRET, template=EXTRACTABLE)
        assert other[Attribute.VALUE] != mine[Attribute.VALUE]
    finally:
        raw.C_CloseSession(h)


def test_kem_without_login(card_env: CardEnv) -> None:
    with card_env.token().open(rw=True, user_pin=USER_PIN) as s:
        _ml_kem(s, MLKEMParameterSet.ML_KEM_768, store=True, label="kem-login")
    reinitialize(card_env.lib)  # every session gone: the card is logged out
    with card_env.token().open(rw=True) as s:
        key = s.get_key(label="kem-login", object_class=ObjectClass.PUBLIC_KEY)
        assert key[Attribute.ENCAPSULATE]
        # the private key is out of reach, and the new secret key would be a private object
        assert not list(s.get_objects({Attribute.LABEL: "kem-login", Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        with pytest.raises(pkcs11.exceptions.UserNotLoggedIn):
            key.encapsulate_key(KeyType.GENERIC_SECRET)
