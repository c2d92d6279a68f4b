"""Mechanisms without native code: every signer checked by its verifier and by `cryptography` itself."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import GcmParams, Mechanism, OaepParams, PssParams
from vsc_provider.token import crypto

RSA = rsa.generate_private_key(65537, 2048)
P256 = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()
DATA = b"the quick brown fox" * 10


@pytest.mark.parametrize(
    "mech",
    [
        Mechanism(C.CKM_SHA256_RSA_PKCS),
        Mechanism(C.CKM_SHA512_RSA_PKCS),
        Mechanism(C.CKM_SHA256_RSA_PKCS_PSS, PssParams(C.CKM_SHA256, C.CKG_MGF1_SHA256, 32)),
        Mechanism(C.CKM_SHA384_RSA_PKCS_PSS, PssParams(C.CKM_SHA384, C.CKG_MGF1_SHA384, 48)),
    ],
)
def test_rsa_hash_and_sign_single_and_multipart(mech):
    signer = crypto.make_signer(mech, RSA)
    one = signer.sign(DATA)
    parts = crypto.make_signer(mech, RSA)
    for i in range(0, len(DATA), 37):
        parts.update(DATA[i : i + 37])
    multi = parts.final()
    verifier = crypto.make_verifier(mech, RSA.public_key())
    verifier.verify(DATA, one)
    verifier = crypto.make_verifier(mech, RSA.public_key())
    verifier.update(DATA[:5])
    verifier.update(DATA[5:])
    verifier.final(multi)
    with pytest.raises(CKRError) as err:
        crypto.make_verifier(mech, RSA.public_key()).verify(DATA + b"!", one)
    assert err.value.rv == C.CKR_SIGNATURE_INVALID


def test_rsa_pkcs_digest_info_and_raw_payloads_match_openssl():
    digest = hashlib.sha256(DATA).digest()
    prefix = bytes.fromhex("3031300d060960864801650304020105000420")
    signer = crypto.make_signer(Mechanism(C.CKM_RSA_PKCS), RSA)
    RSA.public_key().verify(signer.sign(prefix + digest), DATA, padding.PKCS1v15(), hashes.SHA256())
    # A payload that is not a DigestInfo (TLS 1.0's MD5+SHA1) goes through the raw private operation.
    tls10 = bytes(36)
    raw_sig = crypto.make_signer(Mechanism(C.CKM_RSA_PKCS), RSA).sign(tls10)
    crypto.make_verifier(Mechanism(C.CKM_RSA_PKCS), RSA.public_key()).verify(tls10, raw_sig)


def test_ecdsa_raw_signature_format_and_any_hash_length():
    for length in (20, 32, 48, 17):
        digest = bytes(range(1, length + 1))
        sig = crypto.make_signer(Mechanism(C.CKM_ECDSA), P256).sign(digest)
        assert len(sig) == 64
        crypto.make_verifier(Mechanism(C.CKM_ECDSA), P256.public_key()).verify(digest, sig)
    sig = crypto.make_signer(Mechanism(C.CKM_ECDSA_SHA256), P256).sign(DATA)
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    P256.public_key().verify(der, DATA, ec.ECDSA(hashes.SHA256()))


def test_eddsa_and_hmac():
    sig = crypto.make_signer(Mechanism(C.CKM_EDDSA), ED).sign(DATA)
    ED.public_key().verify(sig, DATA)
    key = b"k" * 32
    mac = crypto.make_signer(Mechanism(C.CKM_SHA256_HMAC), key).sign(DATA)
    crypto.make_verifier(Mechanism(C.CKM_SHA256_HMAC), key).verify(DATA, mac)
    with pytest.raises(CKRError) as err:
        crypto.make_verifier(Mechanism(C.CKM_SHA256_HMAC), key).verify(DATA, bytes(32))
    assert err.value.rv == C.CKR_SIGNATURE_INVALID


def test_oaep_with_label_and_aes_modes():
    oaep = Mechanism(C.CKM_RSA_PKCS_OAEP, OaepParams(C.CKM_SHA256, C.CKG_MGF1_SHA256, C.CKZ_DATA_SPECIFIED, b"lbl"))
    ct = crypto.make_encryptor(oaep, RSA.public_key()).run(b"secret")
    assert crypto.make_decryptor(oaep, RSA).run(ct) == b"secret"
    aes = bytes(range(32))
    for mech in (
        Mechanism(C.CKM_AES_CBC_PAD, bytes(16)),
        Mechanism(C.CKM_AES_GCM, GcmParams(bytes(12), b"aad", 128)),
        Mechanism(C.CKM_AES_KEY_WRAP_PAD),
    ):
        ct = crypto.make_encryptor(mech, aes).run(DATA)
        assert crypto.make_decryptor(mech, aes).run(ct) == DATA


def test_mechanism_mismatches_are_refused():
    with pytest.raises(CKRError) as err:
        crypto.make_signer(Mechanism(C.CKM_ECDSA), RSA)
    assert err.value.rv == C.CKR_KEY_TYPE_INCONSISTENT
    with pytest.raises(CKRError) as err:
        crypto.make_signer(Mechanism(C.CKM_SHA256_RSA_PKCS_PSS, PssParams(C.CKM_SHA_1, C.CKG_MGF1_SHA1, 20)), RSA)
    assert err.value.rv == C.CKR_MECHANISM_PARAM_INVALID
