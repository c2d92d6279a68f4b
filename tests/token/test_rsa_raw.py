"""The raw RSA private operation in OpenSSL (token/rsa_raw.py), checked against `cryptography` and the textbook
definition (a test oracle computed here with Python integers, as the module did before)."""

from __future__ import annotations

import os
import threading

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import crypto, rsa_raw

KEYS = {bits: rsa.generate_private_key(65537, bits) for bits in (1024, 2048, 3072)}
KEYS[2047] = rsa.generate_private_key(3, 2047)  # a modulus whose top byte is small, and e = 3


def _oracle(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    """m = c^d mod n: what the former pure-Python implementation returned (CRT gives the same value)."""
    n = key.private_numbers()
    return pow(int.from_bytes(block, "big"), n.d, n.public_numbers.n).to_bytes(len(block), "big")


def _below_modulus(raw: rsa_raw.RsaRaw) -> bytes:
    while True:
        block = os.urandom(raw.size)
        if block < raw._modulus:
            return block


@pytest.mark.parametrize("bits", sorted(KEYS))
def test_sign_and_decrypt_are_the_textbook_private_operation(bits: int) -> None:
    key = KEYS[bits]
    raw = rsa_raw.RsaRaw(key)
    assert raw.blinding()
    for block in [_below_modulus(raw) for _ in range(8)] + [bytes(raw.size), b"\x00" * (raw.size - 1) + b"\x01"]:
        expected = _oracle(key, block)
        assert raw.sign(block) == expected
        assert raw.decrypt(block) == expected


@pytest.mark.parametrize("bits", sorted(KEYS))
def test_pkcs1_of_any_payload_is_recovered_by_cryptography(bits: int) -> None:
    key = KEYS[bits]
    signer = crypto.make_signer(Mechanism(C.CKM_RSA_PKCS), key)
    for payload in (b"", b"x", b"tls 1.0 md5+sha1 " * 2, os.urandom(signer.length - 11)):
        sig = signer.sign(payload)
        assert len(sig) == signer.length
        assert key.public_key().recover_data_from_signature(sig, padding.PKCS1v15(), None) == payload
    with pytest.raises(CKRError) as err:
        signer.sign(bytes(signer.length - 10))
    assert err.value.rv == C.CKR_DATA_LEN_RANGE


def test_x509_sign_of_a_pkcs1_block_equals_cryptography_signature() -> None:
    key = KEYS[2048]
    digest = os.urandom(32)
    info = bytes.fromhex("3031300d060960864801650304020105000420") + digest
    block = b"\x00\x01" + b"\xff" * (256 - 3 - len(info)) + b"\x00" + info
    sig = crypto.make_signer(Mechanism(C.CKM_RSA_X_509), key).sign(block)
    assert sig == key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    # shorter input is left-padded with zeros, as before
    short = crypto.make_signer(Mechanism(C.CKM_RSA_X_509), key).sign(block[1:])
    assert short == sig


@pytest.mark.parametrize("bits", [1024, 2048, 3072])
def test_x509_decrypt_reveals_the_padded_blocks_cryptography_made(bits: int) -> None:
    key = KEYS[bits]
    size = (bits + 7) // 8
    decryptor = crypto.make_decryptor(Mechanism(C.CKM_RSA_X_509), key)
    message = b"secret session key 0123456789ab"
    block = decryptor.run(key.public_key().encrypt(message, padding.PKCS1v15()))
    assert len(block) == size
    assert block[:2] == b"\x00\x02"
    assert block.index(b"\x00", 2) == size - len(message) - 1
    assert block.endswith(message)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    ciphertext = key.public_key().encrypt(message, oaep)
    block = decryptor.run(ciphertext)
    assert block[0] == 0 and block == _oracle(key, ciphertext)


def test_input_not_below_the_modulus_is_refused() -> None:
    key = KEYS[2048]
    modulus = key.public_key().public_numbers().n.to_bytes(256, "big")
    with pytest.raises(CKRError) as err:
        crypto.make_signer(Mechanism(C.CKM_RSA_X_509), key).sign(modulus)
    assert err.value.rv == C.CKR_DATA_INVALID
    with pytest.raises(CKRError) as err:
        crypto.make_signer(Mechanism(C.CKM_RSA_X_509), key).sign(b"\xff" * 256)
    assert err.value.rv == C.CKR_DATA_INVALID
    with pytest.raises(CKRError) as err:
        crypto.make_signer(Mechanism(C.CKM_RSA_X_509), key).sign(b"\x01" * 257)
    assert err.value.rv == C.CKR_DATA_LEN_RANGE
    with pytest.raises(CKRError) as err:
        crypto.make_decryptor(Mechanism(C.CKM_RSA_X_509), key).run(modulus)
    assert err.value.rv == C.CKR_ENCRYPTED_DATA_INVALID
    with pytest.raises(CKRError) as err:
        crypto.make_decryptor(Mechanism(C.CKM_RSA_X_509), key).run(b"\x01" * 255)
    assert err.value.rv == C.CKR_ENCRYPTED_DATA_LEN_RANGE


def test_one_prepared_key_serves_several_threads() -> None:
    key = KEYS[2048]
    raw = rsa_raw.RsaRaw(key)
    blocks = [_below_modulus(raw) for _ in range(4)]
    expected = [_oracle(key, b) for b in blocks]
    wrong: list[int] = []

    def work(i: int) -> None:
        for _ in range(25):
            if raw.sign(blocks[i]) != expected[i]:
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not wrong


def test_binds_the_libcrypto_already_loaded_by_python() -> None:
    import ssl

    assert rsa_raw._lib.OpenSSL_version_num() >= 0x30000000
    # _ssl and _hashlib share the system libcrypto: the same library this module bound
    assert rsa_raw._lib.OpenSSL_version_num() == ssl.OPENSSL_VERSION_NUMBER
