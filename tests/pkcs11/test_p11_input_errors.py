"""A caller's bad input to the `cryptography` calls behind each mechanism gets a specific CKR, never
CKR_GENERAL_ERROR: AES-CBC-PAD lengths, GCM IVs, OAEP labels, PSS salts, ECDH points, EdDSA parameters,
key sizes, and calls after a short buffer. Good input around each limit is checked against `cryptography`."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from p11_support import (
    CK_GCM_PARAMS,
    CK_MECHANISM,
    CK_ULONG,
    CardEnv,
    RawModule,
    make_template,
    public_key_of,
)
from pkcs11 import KDF, MGF, Attribute, KeyType, Mechanism, ObjectClass, exceptions
from pkcs11.util.ec import encode_named_curve_parameters

from vsc_provider.ck import constants as C


@pytest.fixture(scope="module")
def aes(session: pkcs11.Session) -> tuple[pkcs11.SecretKey, bytes]:
    value = os.urandom(32)
    key = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: value,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.SIGN: True,
        }
    )
    return key, value


@pytest.fixture(scope="module")
def rsa_pair(session: pkcs11.Session) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    return session.generate_keypair(KeyType.RSA, 2048, label="rsa-input")


@pytest.fixture
def raw_session(card_env: CardEnv, module_path: str, session: pkcs11.Session) -> Iterator[tuple[RawModule, int]]:
    raw = RawModule(module_path)
    h = raw.open(int(card_env.slot().slot_id))
    yield raw, h
    raw.C_CloseSession(h)


def test_cbc_pad_decrypt_of_a_partial_block_is_encrypted_data_len_range(aes, session):
    key, _ = aes
    iv = os.urandom(16)
    with pytest.raises(exceptions.EncryptedDataLenRange):  # C_DecryptUpdate 16 + 1 bytes, then C_DecryptFinal
        b"".join(key.decrypt(iter([os.urandom(16), b"x"]), mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv))
    with pytest.raises(exceptions.EncryptedDataLenRange):  # one-shot C_Decrypt of 17 bytes
        key.decrypt(os.urandom(17), mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)
    ciphertext = key.encrypt(
        b"the operation ended: a new one starts", mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv
    )
    assert key.decrypt(ciphertext, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv).startswith(b"the operation")


def _gcm(raw: RawModule, h: int, key: int, iv: bytes, data: bytes, decrypt: bool = False) -> tuple[int, bytes]:
    """One-shot AES-GCM through the raw ABI (python-pkcs11 refuses IVs longer than 12 bytes itself)."""
    iv_buf = ctypes.create_string_buffer(iv, max(1, len(iv)))
    aad = ctypes.create_string_buffer(b"aad", 3)
    params = CK_GCM_PARAMS(
        ctypes.addressof(iv_buf) if iv else None, len(iv), 8 * len(iv), ctypes.addressof(aad), 3, 128
    )
    mech = CK_MECHANISM(C.CKM_AES_GCM, ctypes.cast(ctypes.byref(params), ctypes.c_void_p), ctypes.sizeof(params))
    init, run = (raw.C_DecryptInit, raw.C_Decrypt) if decrypt else (raw.C_EncryptInit, raw.C_Encrypt)
    rv = init(h, ctypes.byref(mech), key)
    if rv:
        return rv, b""
    out, n = ctypes.create_string_buffer(len(data) + 16), CK_ULONG(len(data) + 16)
    rv = run(h, data, len(data), out, ctypes.byref(n))
    return rv, out.raw[: n.value]


@pytest.mark.parametrize("iv_len", [0, 4, 7, 129, 256, 1 << 20])
def test_gcm_iv_outside_8_to_128_bytes_is_mechanism_param_invalid(raw_session, aes, iv_len):
    raw, h = raw_session
    iv = os.urandom(iv_len)
    assert _gcm(raw, h, aes[0].handle, iv, b"data")[0] == C.CKR_MECHANISM_PARAM_INVALID
    assert _gcm(raw, h, aes[0].handle, iv, os.urandom(32), decrypt=True)[0] == C.CKR_MECHANISM_PARAM_INVALID


@pytest.mark.parametrize("iv_len", [8, 12, 16, 128])
def test_gcm_iv_of_8_to_128_bytes_works(raw_session, aes, iv_len):
    raw, h = raw_session
    key, value = aes
    iv = os.urandom(iv_len)
    rv, out = _gcm(raw, h, key.handle, iv, b"data" * 9)
    assert rv == 0
    enc = Cipher(algorithms.AES(value), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(b"aad")
    assert out == enc.update(b"data" * 9) + enc.finalize() + enc.tag
    assert _gcm(raw, h, key.handle, iv, out, decrypt=True) == (0, b"data" * 9)


def test_aes_key_wrap_pad_of_nothing_is_data_len_range(aes):
    key, _ = aes
    with pytest.raises(exceptions.DataLenRange):
        key.encrypt(b"", mechanism=Mechanism.AES_KEY_WRAP_PAD)
    assert len(key.encrypt(b"k", mechanism=Mechanism.AES_KEY_WRAP_PAD)) == 16


@pytest.mark.parametrize("label", [None, b"x", os.urandom(1000)], ids=["none", "short", "random-1000"])
def test_oaep_labels(rsa_pair, label):
    pub, priv = rsa_pair
    param = (Mechanism.SHA256, MGF.SHA256, label)
    ciphertext = pub.encrypt(b"secret", mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), label)
    # the module's ciphertext opens outside it, and the other way round
    assert priv.decrypt(ciphertext, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param) == b"secret"
    outside = public_key_of(pub).encrypt(b"secret", oaep)
    assert priv.decrypt(outside, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param) == b"secret"
    with pytest.raises(exceptions.EncryptedDataInvalid):
        priv.decrypt(ciphertext, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(*param[:2], b"other label"))


def test_oaep_with_an_unknown_hash_or_a_hash_too_big_for_the_data(rsa_pair):
    pub, priv = rsa_pair
    with pytest.raises(exceptions.MechanismParamInvalid):
        pub.encrypt(b"x", mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(0x210, MGF.SHA1, None))
    param = (Mechanism.SHA512, MGF.SHA512, None)
    with pytest.raises(exceptions.DataLenRange):  # 256 - 2 * 64 - 2 = 126 bytes at most
        pub.encrypt(b"x" * 127, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    with pytest.raises(exceptions.EncryptedDataLenRange):
        priv.decrypt(b"x" * 255, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)


@pytest.mark.parametrize("salt", [0, 32, 222])  # 222 = 256 - 32 - 2, the longest for RSA-2048 and SHA-256
def test_pss_salt_lengths_up_to_the_limit_verify_outside(rsa_pair, salt):
    pub, priv = rsa_pair
    param = (Mechanism.SHA256, MGF.SHA256, salt)
    sig = priv.sign(b"message", mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=param)
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), salt)
    public_key_of(pub).verify(sig, b"message", pss, hashes.SHA256())
    assert pub.verify(b"message", sig, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=param)


@pytest.mark.parametrize("salt", [223, 1 << 31, (1 << 64) - 1])
def test_pss_salt_beyond_the_limit_is_mechanism_param_invalid(rsa_pair, salt):
    pub, priv = rsa_pair
    param = (Mechanism.SHA256, MGF.SHA256, salt)
    with pytest.raises(exceptions.MechanismParamInvalid):
        priv.sign(b"message", mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=param)
    with pytest.raises(exceptions.MechanismParamInvalid):
        pub.verify(b"message", b"\x00" * 256, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=param)


@pytest.fixture(scope="module")
def ecdh_key(session: pkcs11.Session) -> pkcs11.PrivateKey:
    _, priv = session.generate_keypair(
        KeyType.EC,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
        private_template={Attribute.DERIVE: True},
    )
    return priv


def _point(curve: ec.EllipticCurve) -> bytes:
    return (
        ec.generate_private_key(curve)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


@pytest.mark.parametrize(
    "point",
    [
        b"",
        b"\x00",  # the point at infinity
        b"\x04" + bytes(64),  # not on the curve
        _point(ec.SECP256R1())[:-1],  # truncated
        _point(ec.SECP384R1()),  # another curve's point
        os.urandom(65),
    ],
    ids=["empty", "infinity", "off-curve", "truncated", "p384-point", "random"],
)
def test_ecdh_with_a_bad_public_point_is_mechanism_param_invalid(ecdh_key, point):
    with pytest.raises(exceptions.MechanismParamInvalid):
        ecdh_key.derive_key(KeyType.GENERIC_SECRET, 256, mechanism_param=(KDF.NULL, None, point))


def test_ecdh_with_a_good_point_derives(ecdh_key):
    key = ecdh_key.derive_key(
        KeyType.GENERIC_SECRET, 256, mechanism_param=(KDF.NULL, None, _point(ec.SECP256R1())), capabilities=0
    )
    assert key.key_type == KeyType.GENERIC_SECRET


@pytest.fixture(scope="module")
def ed_pair(session: pkcs11.Session) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    return session.generate_keypair(
        KeyType.EC_EDWARDS,
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: bytes.fromhex("06032b6570")},
    )


@pytest.mark.parametrize("param", [(True, None), (False, b"context"), (True, b"c" * 255)])
def test_ed25519ph_and_ctx_are_refused_for_signing_and_verifying(ed_pair, param):
    pub, priv = ed_pair
    with pytest.raises(exceptions.MechanismParamInvalid):
        priv.sign(b"m", mechanism=Mechanism.EDDSA, mechanism_param=param)
    sig = priv.sign(b"m", mechanism=Mechanism.EDDSA)
    with pytest.raises(exceptions.MechanismParamInvalid):  # a pure Ed25519 signature is not an Ed25519ph one
        pub.verify(b"m", sig, mechanism=Mechanism.EDDSA, mechanism_param=param)
    assert pub.verify(b"m", sig, mechanism=Mechanism.EDDSA, mechanism_param=(False, None))


@pytest.mark.parametrize("bits", [0, 1024, 2047, 4097, 1 << 31])
def test_rsa_key_sizes_outside_the_range_are_key_size_range(session, bits):
    with pytest.raises(exceptions.KeySizeRange):
        session.generate_keypair(KeyType.RSA, bits)


@pytest.mark.parametrize("length", [0, 15, 33, 1 << 40])
def test_aes_key_lengths_outside_the_range_are_key_size_range(session, length):
    with pytest.raises((exceptions.KeySizeRange, exceptions.AttributeValueInvalid)):
        session.generate_key(KeyType.AES, length * 8 if length < 1 << 32 else length)


@pytest.mark.parametrize(
    "params",
    [
        b"",
        bytes.fromhex("06032b65"),  # truncated
        bytes.fromhex("06082a8648ce3d030101"),  # P-192: not offered
        bytes.fromhex("3080"),  # an indefinite-length SEQUENCE with nothing in it
        os.urandom(40),
    ],
    ids=["empty", "truncated-oid", "p192", "empty-indefinite", "random"],
)
def test_malformed_or_unsupported_curves_are_curve_not_supported(raw_session, params):
    raw, h = raw_session
    mech = CK_MECHANISM(C.CKM_EC_KEY_PAIR_GEN, None, 0)
    public, _keep_pub = make_template([(C.CKA_EC_PARAMS, params), (C.CKA_TOKEN, b"\x00")])
    private, _keep_priv = make_template([(C.CKA_TOKEN, b"\x00")])
    pub, priv = CK_ULONG(), CK_ULONG()
    rv = raw.C_GenerateKeyPair(h, ctypes.byref(mech), public, 2, private, 1, ctypes.byref(pub), ctypes.byref(priv))
    assert rv in (C.CKR_CURVE_NOT_SUPPORTED, C.CKR_TEMPLATE_INCOMPLETE), hex(rv)


# --- calls after a short buffer (raw ABI: python-pkcs11 always sizes its buffers) ----------------------


def test_update_after_a_short_final_buffer_ends_the_operation(raw_session, aes):
    raw, h = raw_session
    mech = CK_MECHANISM(C.CKM_SHA256, None, 0)
    out, n = ctypes.create_string_buffer(64), CK_ULONG(8)
    assert raw.C_DigestInit(h, ctypes.byref(mech)) == 0
    assert raw.C_Digest(h, b"abc", 3, out, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    assert raw.C_DigestUpdate(h, b"more", 4) == C.CKR_OPERATION_ACTIVE
    assert raw.C_DigestFinal(h, out, ctypes.byref(n)) == C.CKR_OPERATION_NOT_INITIALIZED

    key = aes[0].handle
    iv = ctypes.create_string_buffer(os.urandom(16), 16)
    cbc = CK_MECHANISM(C.CKM_AES_CBC_PAD, ctypes.cast(iv, ctypes.c_void_p), 16)
    assert raw.C_EncryptInit(h, ctypes.byref(cbc), key) == 0
    n = CK_ULONG(64)
    assert raw.C_EncryptUpdate(h, b"x" * 20, 20, out, ctypes.byref(n)) == 0
    n = CK_ULONG(4)
    assert raw.C_EncryptFinal(h, out, ctypes.byref(n)) == C.CKR_BUFFER_TOO_SMALL
    n = CK_ULONG(64)
    assert raw.C_EncryptUpdate(h, b"y", 1, out, ctypes.byref(n)) == C.CKR_OPERATION_ACTIVE
    assert raw.C_EncryptFinal(h, out, ctypes.byref(n)) == C.CKR_OPERATION_NOT_INITIALIZED
