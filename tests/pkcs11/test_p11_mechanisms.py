"""Every mechanism the module lists, driven through python-pkcs11 and checked with `cryptography`.

Signatures are verified against the public key read back from the token (CKA_PUBLIC_KEY_INFO), and
ciphertexts are opened (or made) outside the token, so a wrong padding or hash cannot pass unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from p11_support import CKA_PUBLIC_KEY_INFO, CardEnv, public_key_of
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

HASHES: dict[str, tuple[Mechanism, Any, MGF]] = {
    "sha1": (Mechanism.SHA_1, hashes.SHA1, MGF.SHA1),
    "sha224": (Mechanism.SHA224, hashes.SHA224, MGF.SHA224),
    "sha256": (Mechanism.SHA256, hashes.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384, hashes.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512, hashes.SHA512, MGF.SHA512),
}
RSA_PKCS_HASHED = {
    "sha1": Mechanism.SHA1_RSA_PKCS,
    "sha224": Mechanism.SHA224_RSA_PKCS,
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
RSA_PSS_HASHED = {
    "sha1": Mechanism.SHA1_RSA_PKCS_PSS,
    "sha224": Mechanism.SHA224_RSA_PKCS_PSS,
    "sha256": Mechanism.SHA256_RSA_PKCS_PSS,
    "sha384": Mechanism.SHA384_RSA_PKCS_PSS,
    "sha512": Mechanism.SHA512_RSA_PKCS_PSS,
}
ECDSA_HASHED = {
    "sha1": Mechanism.ECDSA_SHA1,
    "sha224": Mechanism.ECDSA_SHA224,
    "sha256": Mechanism.ECDSA_SHA256,
    "sha384": Mechanism.ECDSA_SHA384,
    "sha512": Mechanism.ECDSA_SHA512,
}
HMACS = {
    "sha1": Mechanism.SHA_1_HMAC,
    "sha224": Mechanism.SHA224_HMAC,
    "sha256": Mechanism.SHA256_HMAC,
    "sha384": Mechanism.SHA384_HMAC,
    "sha512": Mechanism.SHA512_HMAC,
}
DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")
MESSAGE = b"The quick brown fox jumps over the lazy dog" * 3
PARTS = [MESSAGE[:10], MESSAGE[10:77], MESSAGE[77:]]  # Init/Update/Update/Update/Final, as Firefox signs


@pytest.fixture(scope="module")
def rsa_pair(session: pkcs11.Session) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    return session.generate_keypair(KeyType.RSA, 2048, label="rsa", store=True)


def _ec_pair(session: pkcs11.Session, curve: str) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    params = encode_named_curve_parameters(curve)
    return session.generate_keypair(
        KeyType.EC,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: params},
        label=f"ec-{curve}",
        store=True,
    )


@pytest.fixture(scope="module", params=["secp256r1", "secp384r1"])
def ec_pair(request: pytest.FixtureRequest, session: pkcs11.Session) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    return _ec_pair(session, request.param)


def _der_ecdsa(raw: bytes) -> bytes:
    half = len(raw) // 2
    return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


# --- RSA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_rsa_key_pair_generation(session: pkcs11.Session, bits: int) -> None:
    pub, priv = session.generate_keypair(KeyType.RSA, bits, label=f"rsa{bits}")
    key = public_key_of(pub)
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == bits
    assert pub[Attribute.MODULUS_BITS] == bits
    assert priv[Attribute.MODULUS] == pub[Attribute.MODULUS]
    assert priv[Attribute.ID] == pub[Attribute.ID] != b""
    sig = priv.sign(MESSAGE, mechanism=Mechanism.SHA256_RSA_PKCS)
    key.verify(sig, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def test_rsa_pkcs_signs_digest_info(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    pub, priv = rsa_pair
    payload = DIGEST_INFO_SHA256 + hashlib.sha256(MESSAGE).digest()
    sig = priv.sign(payload, mechanism=Mechanism.RSA_PKCS)
    public_key_of(pub).verify(sig, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def test_rsa_pkcs_signs_raw_payload(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    pub, priv = rsa_pair
    payload = hashlib.md5(MESSAGE).digest() + hashlib.sha1(MESSAGE).digest()  # the TLS 1.0 payload
    sig = priv.sign(payload, mechanism=Mechanism.RSA_PKCS)
    assert public_key_of(pub).recover_data_from_signature(sig, padding.PKCS1v15(), None) == payload
    assert pub.verify(payload, sig, mechanism=Mechanism.RSA_PKCS)
    assert not pub.verify(payload[:-1] + b"\x00", sig, mechanism=Mechanism.RSA_PKCS)


def test_rsa_pkcs_decrypt_and_encrypt(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    pub, priv = rsa_pair
    ciphertext = public_key_of(pub).encrypt(b"secret", padding.PKCS1v15())
    assert priv.decrypt(ciphertext, mechanism=Mechanism.RSA_PKCS) == b"secret"
    assert priv.decrypt(pub.encrypt(b"again", mechanism=Mechanism.RSA_PKCS), mechanism=Mechanism.RSA_PKCS) == b"again"


def test_rsa_x_509_sign_and_decrypt(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    pub, priv = rsa_pair
    numbers = public_key_of(pub).public_numbers()
    block = os.urandom(255)  # shorter than the modulus: left-padded with zeros
    sig = priv.sign(block, mechanism=Mechanism.RSA_X_509)
    assert len(sig) == 256
    assert pow(int.from_bytes(sig, "big"), numbers.e, numbers.n) == int.from_bytes(block, "big")
    plain = int.from_bytes(os.urandom(200), "big")
    ciphertext = pow(plain, numbers.e, numbers.n).to_bytes(256, "big")
    assert int.from_bytes(priv.decrypt(ciphertext, mechanism=Mechanism.RSA_X_509), "big") == plain


@pytest.mark.parametrize("name", sorted(RSA_PKCS_HASHED))
def test_hash_rsa_pkcs(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey], name: str) -> None:
    pub, priv = rsa_pair
    mech = RSA_PKCS_HASHED[name]
    alg = HASHES[name][1]
    key = public_key_of(pub)
    key.verify(priv.sign(MESSAGE, mechanism=mech), MESSAGE, padding.PKCS1v15(), alg())
    key.verify(priv.sign(iter(PARTS), mechanism=mech), MESSAGE, padding.PKCS1v15(), alg())
    sig = priv.sign(MESSAGE, mechanism=mech)
    assert pub.verify(MESSAGE, sig, mechanism=mech)
    assert pub.verify(iter(PARTS), sig, mechanism=mech)
    assert not pub.verify(MESSAGE + b"!", sig, mechanism=mech)


@pytest.mark.parametrize("name", sorted(HASHES))
def test_rsa_pkcs_pss_on_a_hash(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey], name: str) -> None:
    pub, priv = rsa_pair
    hash_mech, alg, mgf = HASHES[name]
    size = alg.digest_size
    digest = hashlib.new(alg.name, MESSAGE).digest()
    sig = priv.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=(hash_mech, mgf, size))
    public_key_of(pub).verify(sig, digest, padding.PSS(padding.MGF1(alg()), salt_length=size), utils.Prehashed(alg()))
    assert pub.verify(digest, sig, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=(hash_mech, mgf, size))


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multi"])
@pytest.mark.parametrize("name", sorted(RSA_PSS_HASHED))
def test_hash_rsa_pkcs_pss(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey], name: str, multipart: bool) -> None:
    pub, priv = rsa_pair
    hash_mech, alg, mgf = HASHES[name]
    param = (hash_mech, mgf, alg.digest_size)
    data: Any = iter(PARTS) if multipart else MESSAGE
    sig = priv.sign(data, mechanism=RSA_PSS_HASHED[name], mechanism_param=param)
    public_key_of(pub).verify(sig, MESSAGE, padding.PSS(padding.MGF1(alg()), salt_length=alg.digest_size), alg())
    assert pub.verify(iter(PARTS), sig, mechanism=RSA_PSS_HASHED[name], mechanism_param=param)


def test_pss_hash_must_match_the_mechanism(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    _, priv = rsa_pair
    with pytest.raises(pkcs11.MechanismParamInvalid):
        priv.sign(MESSAGE, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=(Mechanism.SHA_1, MGF.SHA1, 20))


@pytest.mark.parametrize("name", ["sha1", "sha256", "sha512"])
def test_rsa_pkcs_oaep_with_label(rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey], name: str) -> None:
    pub, priv = rsa_pair
    hash_mech, alg, mgf = HASHES[name]
    label = b"vsc label"
    oaep = padding.OAEP(padding.MGF1(alg()), alg(), label)
    ciphertext = public_key_of(pub).encrypt(b"wrapped secret", oaep)
    param = (hash_mech, mgf, label)
    assert priv.decrypt(ciphertext, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param) == b"wrapped secret"
    with pytest.raises(pkcs11.PKCS11Error):
        priv.decrypt(ciphertext, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(hash_mech, mgf, b"other"))
    token_ct = pub.encrypt(b"from the token", mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    assert priv.decrypt(token_ct, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param) == b"from the token"


# --- EC and EdDSA ------------------------------------------------------------------------------


def test_ec_key_attributes(ec_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    pub, priv = ec_pair
    key = public_key_of(pub)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    raw_point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    # DER OCTET STRING around the uncompressed point (length < 128 for P-256 and P-384)
    assert pub[Attribute.EC_POINT] == bytes([0x04, len(raw_point)]) + raw_point
    assert priv[Attribute.EC_PARAMS] == pub[Attribute.EC_PARAMS]
    assert priv[CKA_PUBLIC_KEY_INFO] == pub[CKA_PUBLIC_KEY_INFO]


def test_ecdsa_on_a_hash(ec_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    pub, priv = ec_pair
    key = public_key_of(pub)
    for alg in (hashes.SHA256, hashes.SHA384, hashes.SHA1):
        digest = hashlib.new(alg.name, MESSAGE).digest()
        sig = priv.sign(digest, mechanism=Mechanism.ECDSA)
        assert len(sig) == 2 * ((key.curve.key_size + 7) // 8)
        key.verify(_der_ecdsa(sig), digest, ec.ECDSA(utils.Prehashed(alg())))
        assert pub.verify(digest, sig, mechanism=Mechanism.ECDSA)


@pytest.mark.parametrize("name", sorted(ECDSA_HASHED))
def test_ecdsa_hashed(ec_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey], name: str) -> None:
    pub, priv = ec_pair
    mech = ECDSA_HASHED[name]
    alg = HASHES[name][1]
    key = public_key_of(pub)
    key.verify(_der_ecdsa(priv.sign(MESSAGE, mechanism=mech)), MESSAGE, ec.ECDSA(alg()))
    sig = priv.sign(iter(PARTS), mechanism=mech)
    key.verify(_der_ecdsa(sig), MESSAGE, ec.ECDSA(alg()))
    assert pub.verify(MESSAGE, sig, mechanism=mech)
    assert not pub.verify(MESSAGE + b"!", sig, mechanism=mech)


def test_ecdh1_derive(session: pkcs11.Session, ec_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]) -> None:
    pub, priv = ec_pair
    token_key = public_key_of(pub)
    peer = ec.generate_private_key(token_key.curve)
    peer_point = peer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    expected = peer.exchange(ec.ECDH(), token_key)
    derived = priv.derive_key(
        KeyType.GENERIC_SECRET,
        len(expected) * 8,
        mechanism=Mechanism.ECDH1_DERIVE,
        mechanism_param=(pkcs11.KDF.NULL, None, peer_point),
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    assert derived[Attribute.VALUE] == expected
    aes = priv.derive_key(
        KeyType.AES,
        128,
        mechanism=Mechanism.ECDH1_DERIVE,
        mechanism_param=(pkcs11.KDF.NULL, None, peer_point),
    )
    assert aes[Attribute.VALUE_LEN] == 16
    with pytest.raises(pkcs11.AttributeSensitive):
        _ = aes[Attribute.VALUE]


def test_ed25519(session: pkcs11.Session) -> None:
    params = encode_named_curve_parameters("1.3.101.112")
    pub, priv = session.generate_keypair(
        KeyType.EC_EDWARDS,
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: params},
        label="ed25519",
    )
    key = public_key_of(pub)
    assert isinstance(key, ed25519.Ed25519PublicKey)
    assert pub[Attribute.KEY_TYPE] == KeyType.EC_EDWARDS
    sig = priv.sign(MESSAGE, mechanism=Mechanism.EDDSA)
    key.verify(sig, MESSAGE)
    assert pub.verify(MESSAGE, sig, mechanism=Mechanism.EDDSA)
    assert not pub.verify(MESSAGE + b"!", sig, mechanism=Mechanism.EDDSA)
    key.verify(priv.sign(MESSAGE, mechanism=Mechanism.EDDSA, mechanism_param=(False, None)), MESSAGE)
    with pytest.raises(pkcs11.MechanismParamInvalid):  # Ed25519ph is not offered
        priv.sign(MESSAGE, mechanism=Mechanism.EDDSA, mechanism_param=(True, None))


# --- AES ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aes_value() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="module")
def aes_key(session: pkcs11.Session, aes_value: bytes) -> pkcs11.SecretKey:
    """An AES key with a known value, so results can be checked with `cryptography`."""
    return session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: aes_value,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.WRAP: True,
            Attribute.UNWRAP: True,
            Attribute.LABEL: "aes-known",
        }
    )


@pytest.mark.parametrize("length", [16, 24, 32])
def test_aes_key_generation(session: pkcs11.Session, length: int) -> None:
    key = session.generate_key(KeyType.AES, length * 8, label="aes-gen")
    assert key[Attribute.VALUE_LEN] == length
    assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
    assert key[Attribute.LOCAL] and key[Attribute.ALWAYS_SENSITIVE] and key[Attribute.NEVER_EXTRACTABLE]
    with pytest.raises(pkcs11.AttributeSensitive):
        _ = key[Attribute.VALUE]
    iv = os.urandom(16)
    ciphertext = key.encrypt(MESSAGE, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)
    assert key.decrypt(ciphertext, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv) == MESSAGE
    readable = session.generate_key(
        KeyType.AES, length * 8, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
    )
    value = readable[Attribute.VALUE]
    assert len(value) == length
    assert not readable[Attribute.ALWAYS_SENSITIVE]
    block = readable.encrypt(b"\x00" * 16, mechanism=Mechanism.AES_ECB)
    assert block == Cipher(algorithms.AES(value), modes.ECB()).encryptor().update(b"\x00" * 16)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_aes_ecb(aes_key: pkcs11.SecretKey, aes_value: bytes) -> None:
    data = os.urandom(64)
    expected = Cipher(algorithms.AES(aes_value), modes.ECB()).encryptor().update(data)
    assert aes_key.encrypt(data, mechanism=Mechanism.AES_ECB) == expected
    assert b"".join(aes_key.encrypt(_chunks(data, 16), mechanism=Mechanism.AES_ECB)) == expected
    assert aes_key.decrypt(expected, mechanism=Mechanism.AES_ECB) == data
    with pytest.raises(pkcs11.DataLenRange):
        aes_key.encrypt(data[:15], mechanism=Mechanism.AES_ECB)


def test_aes_cbc(aes_key: pkcs11.SecretKey, aes_value: bytes) -> None:
    data, iv = os.urandom(80), os.urandom(16)
    expected = Cipher(algorithms.AES(aes_value), modes.CBC(iv)).encryptor().update(data)
    assert aes_key.encrypt(data, mechanism=Mechanism.AES_CBC, mechanism_param=iv) == expected
    multi = b"".join(aes_key.encrypt(_chunks(data, 32), mechanism=Mechanism.AES_CBC, mechanism_param=iv))
    assert multi == expected
    assert aes_key.decrypt(expected, mechanism=Mechanism.AES_CBC, mechanism_param=iv) == data
    multi_plain = b"".join(aes_key.decrypt(_chunks(expected, 16), mechanism=Mechanism.AES_CBC, mechanism_param=iv))
    assert multi_plain == data


def test_aes_cbc_pad(aes_key: pkcs11.SecretKey, aes_value: bytes) -> None:
    iv = os.urandom(16)
    for data in (b"", b"x", os.urandom(16), os.urandom(100)):
        padder = sym_padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        expected = Cipher(algorithms.AES(aes_value), modes.CBC(iv)).encryptor().update(padded)
        if data:
            assert aes_key.encrypt(data, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv) == expected
            multi = b"".join(aes_key.encrypt(_chunks(data, 7), mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv))
            assert multi == expected
        assert aes_key.decrypt(expected, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv) == data
        chunks = _chunks(expected, 16)
        assert b"".join(aes_key.decrypt(chunks, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)) == data


def test_aes_gcm(aes_key: pkcs11.SecretKey, aes_value: bytes) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data, nonce, aad = os.urandom(70), os.urandom(12), b"header"
    expected = AESGCM(aes_value).encrypt(nonce, data, aad)
    param = pkcs11.GCMParams(nonce, aad, 128)
    assert aes_key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=param) == expected
    multi = b"".join(aes_key.encrypt(_chunks(data, 16), mechanism=Mechanism.AES_GCM, mechanism_param=param))
    assert multi == expected
    assert aes_key.decrypt(expected, mechanism=Mechanism.AES_GCM, mechanism_param=param) == data
    multi_plain = b"".join(aes_key.decrypt(_chunks(expected, 16), mechanism=Mechanism.AES_GCM, mechanism_param=param))
    assert multi_plain == data
    tampered = expected[:-1] + bytes([expected[-1] ^ 1])
    with pytest.raises(pkcs11.PKCS11Error):
        aes_key.decrypt(tampered, mechanism=Mechanism.AES_GCM, mechanism_param=param)


def test_aes_key_wrap_and_unwrap(session: pkcs11.Session, aes_key: pkcs11.SecretKey, aes_value: bytes) -> None:
    target_value = os.urandom(16)
    target = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: target_value,
            Attribute.EXTRACTABLE: True,
            Attribute.SENSITIVE: False,
        }
    )
    wrapped = aes_key.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP)
    assert wrapped == keywrap.aes_key_wrap(aes_value, target_value)
    padded = aes_key.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    assert padded == keywrap.aes_key_wrap_with_padding(aes_value, target_value)
    assert aes_key.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP_KWP) == padded  # the 3.0 name of RFC 5649
    unwrapped = aes_key.unwrap_key(
        ObjectClass.SECRET_KEY,
        KeyType.AES,
        wrapped,
        mechanism=Mechanism.AES_KEY_WRAP,
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    assert unwrapped[Attribute.VALUE] == target_value
    assert not unwrapped[Attribute.LOCAL]
    with pytest.raises(pkcs11.PKCS11Error):
        aes_key.unwrap_key(
            ObjectClass.SECRET_KEY, KeyType.AES, wrapped[:-1] + b"\x00", mechanism=Mechanism.AES_KEY_WRAP
        )


def test_private_and_sensitive_keys_do_not_wrap(
    session: pkcs11.Session, aes_key: pkcs11.SecretKey, rsa_pair: tuple[pkcs11.PublicKey, pkcs11.PrivateKey]
) -> None:
    _, priv = rsa_pair
    with pytest.raises(pkcs11.KeyUnextractable):
        aes_key.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    generated = session.generate_key(KeyType.AES, 128)
    with pytest.raises(pkcs11.KeyUnextractable):
        aes_key.wrap_key(generated, mechanism=Mechanism.AES_KEY_WRAP)


# --- digests, HMAC, random ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HASHES))
def test_digest(session: pkcs11.Session, name: str) -> None:
    mech = HASHES[name][0]
    expected = hashlib.new(name, MESSAGE).digest()
    assert session.digest(MESSAGE, mechanism=mech) == expected
    assert session.digest(iter(PARTS), mechanism=mech) == expected
    assert session.digest(b"", mechanism=mech) == hashlib.new(name).digest()


@pytest.mark.parametrize("name", sorted(HMACS))
def test_hmac(session: pkcs11.Session, name: str) -> None:
    value = os.urandom(32)
    key = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.VALUE: value,
            Attribute.SIGN: True,
            Attribute.VERIFY: True,
        }
    )
    mech = HMACS[name]
    expected = hmac.new(value, MESSAGE, name).digest()
    assert key.sign(MESSAGE, mechanism=mech) == expected
    assert key.sign(iter(PARTS), mechanism=mech) == expected
    assert key.verify(MESSAGE, expected, mechanism=mech)
    assert not key.verify(MESSAGE, bytes(len(expected)), mechanism=mech)


def test_generate_random(session: pkcs11.Session) -> None:
    a = session.generate_random(256)
    b = session.generate_random(256)
    assert len(a) == len(b) == 32
    assert a != b
    assert len(session.generate_random(8 * 1000)) == 1000


# --- mechanism list and info -------------------------------------------------------------------

EXPECTED_MECHANISMS = {
    Mechanism.RSA_PKCS_KEY_PAIR_GEN,
    Mechanism.RSA_PKCS,
    Mechanism.RSA_X_509,
    Mechanism.RSA_PKCS_PSS,
    Mechanism.RSA_PKCS_OAEP,
    *RSA_PKCS_HASHED.values(),
    *RSA_PSS_HASHED.values(),
    Mechanism.EC_KEY_PAIR_GEN,
    Mechanism.ECDSA,
    *ECDSA_HASHED.values(),
    Mechanism.ECDH1_DERIVE,
    Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
    Mechanism.EDDSA,
    Mechanism.AES_KEY_GEN,
    Mechanism.AES_ECB,
    Mechanism.AES_CBC,
    Mechanism.AES_CBC_PAD,
    Mechanism.AES_GCM,
    Mechanism.AES_KEY_WRAP,
    *(h[0] for h in HASHES.values()),
    *HMACS.values(),
}


def test_mechanism_list(card_env: CardEnv) -> None:
    assert EXPECTED_MECHANISMS <= set(card_env.slot().get_mechanisms())


def test_mechanism_info(card_env: CardEnv) -> None:
    slot = card_env.slot()
    F = MechanismFlag

    def info(mech: Mechanism) -> Any:
        return slot.get_mechanism_info(mech)

    gen = info(Mechanism.RSA_PKCS_KEY_PAIR_GEN)
    assert (gen.min_key_length, gen.max_key_length) == (2048, 4096)
    assert F.GENERATE_KEY_PAIR in gen.flags
    rsa_pkcs = info(Mechanism.RSA_PKCS)
    for flag in (F.SIGN, F.VERIFY, F.ENCRYPT, F.DECRYPT):
        assert flag in rsa_pkcs.flags
    for mech in (Mechanism.SHA256_RSA_PKCS_PSS, Mechanism.RSA_PKCS_PSS, Mechanism.ECDSA, Mechanism.EDDSA):
        assert F.SIGN in info(mech).flags and F.VERIFY in info(mech).flags
        assert F.DECRYPT not in info(mech).flags
    ec_gen = info(Mechanism.EC_KEY_PAIR_GEN)
    assert (ec_gen.min_key_length, ec_gen.max_key_length) == (256, 521)
    assert F.DERIVE in info(Mechanism.ECDH1_DERIVE).flags
    aes = info(Mechanism.AES_GCM)
    assert (aes.min_key_length, aes.max_key_length) == (16, 32)
    assert F.ENCRYPT in aes.flags and F.DECRYPT in aes.flags
    assert F.WRAP in info(Mechanism.AES_KEY_WRAP).flags
    assert F.DIGEST in info(Mechanism.SHA256).flags
    with pytest.raises(pkcs11.MechanismInvalid):
        info(Mechanism.DES3_CBC)
