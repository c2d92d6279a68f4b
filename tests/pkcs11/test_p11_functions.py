"""C_SeedRandom, C_DigestKey, C_SignRecover/C_VerifyRecover and CKM_GENERIC_SECRET_KEY_GEN through the module."""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os

import pkcs11
import pytest
from cryptography.hazmat.primitives.asymmetric import padding
from p11_support import CK_MECHANISM, CardEnv, RawModule, public_key_of
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

from vsc_provider.ck import constants as C


@pytest.fixture(scope="module")
def raw(module_path: str) -> RawModule:
    return RawModule(module_path)


def test_seed_random_is_accepted_and_generation_goes_on(session: pkcs11.Session) -> None:
    session.seed_random(b"\x00" * 32)
    a, b = session.generate_random(256), session.generate_random(256)
    assert a != b and len(a) == 32


def test_digest_key(session: pkcs11.Session) -> None:
    value = os.urandom(32)
    readable = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.VALUE: value,
            Attribute.SENSITIVE: False,
            Attribute.EXTRACTABLE: True,
        }
    )
    assert session.digest(readable, mechanism=Mechanism.SHA256) == hashlib.sha256(value).digest()
    assert session.digest(iter([b"head", readable]), mechanism=Mechanism.SHA256) == (
        hashlib.sha256(b"head" + value).digest()
    )
    sensitive = session.generate_key(KeyType.AES, 128)
    with pytest.raises(pkcs11.KeyIndigestible):
        session.digest(sensitive, mechanism=Mechanism.SHA256)


def test_generic_secret_key_gen(session: pkcs11.Session) -> None:
    readable = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
    key = session.generate_key(
        KeyType.GENERIC_SECRET, 40 * 8, template=readable, capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY
    )
    value = key[Attribute.VALUE]
    assert len(value) == 40 and key[Attribute.LOCAL]
    assert key[Attribute.KEY_GEN_MECHANISM] == Mechanism.GENERIC_SECRET_KEY_GEN
    assert key[Attribute.CHECK_VALUE] == hashlib.sha1(value).digest()[:3]
    assert key.sign(b"data", mechanism=Mechanism.SHA256_HMAC) == hmac.new(value, b"data", "sha256").digest()


def _call_out(fn: object, h: int, data: bytes) -> tuple[int, bytes]:
    """The two-call convention: length query, then the real call."""
    n = ctypes.c_ulong()
    rv = fn(h, data, len(data), None, ctypes.byref(n))  # type: ignore[operator]
    if rv != C.CKR_OK:
        return int(rv), b""
    out = (ctypes.c_ubyte * n.value)()
    rv = fn(h, data, len(data), out, ctypes.byref(n))  # type: ignore[operator]
    return int(rv), bytes(out[: n.value])


def test_sign_recover_and_verify_recover(card_env: CardEnv, session: pkcs11.Session, raw: RawModule) -> None:
    pub, priv = session.generate_keypair(
        KeyType.RSA,
        2048,
        store=False,
        public_template={Attribute.VERIFY_RECOVER: True},
        private_template={Attribute.SIGN_RECOVER: True},
    )
    numbers = public_key_of(pub).public_numbers()
    h = raw.open(int(card_env.slot().slot_id))
    payload = b"recoverable message"

    def init(fn: object, mech: int, key: int) -> int:
        return int(fn(h, ctypes.byref(CK_MECHANISM(mech, None, 0)), key))  # type: ignore[operator]

    assert init(raw.C_SignRecoverInit, C.CKM_RSA_PKCS, priv.handle) == C.CKR_OK
    rv, sig = _call_out(raw.C_SignRecover, h, payload)
    assert rv == C.CKR_OK and len(sig) == 256
    assert public_key_of(pub).recover_data_from_signature(sig, padding.PKCS1v15(), None) == payload
    assert init(raw.C_VerifyRecoverInit, C.CKM_RSA_PKCS, pub.handle) == C.CKR_OK
    assert _call_out(raw.C_VerifyRecover, h, sig) == (C.CKR_OK, payload)
    assert init(raw.C_VerifyRecoverInit, C.CKM_RSA_PKCS, pub.handle) == C.CKR_OK
    forged = bytearray(sig)
    forged[-1] ^= 1
    assert _call_out(raw.C_VerifyRecover, h, bytes(forged))[0] == C.CKR_SIGNATURE_INVALID
    assert init(raw.C_VerifyRecoverInit, C.CKM_RSA_PKCS, pub.handle) == C.CKR_OK  # the failure ended it
    assert _call_out(raw.C_VerifyRecover, h, sig) == (C.CKR_OK, payload)

    block = os.urandom(200)
    assert init(raw.C_SignRecoverInit, C.CKM_RSA_X_509, priv.handle) == C.CKR_OK
    rv, sig = _call_out(raw.C_SignRecover, h, block)
    assert rv == C.CKR_OK
    assert pow(int.from_bytes(sig, "big"), numbers.e, numbers.n) == int.from_bytes(block, "big")
    assert init(raw.C_VerifyRecoverInit, C.CKM_RSA_X_509, pub.handle) == C.CKR_OK
    assert _call_out(raw.C_VerifyRecover, h, sig) == (C.CKR_OK, block.rjust(256, b"\x00"))

    # Keys need CKA_SIGN_RECOVER / CKA_VERIFY_RECOVER; other mechanisms do not recover.
    pub2, priv2 = session.generate_keypair(KeyType.RSA, 2048, store=False)
    assert init(raw.C_SignRecoverInit, C.CKM_RSA_PKCS, priv2.handle) == C.CKR_KEY_FUNCTION_NOT_PERMITTED
    assert init(raw.C_VerifyRecoverInit, C.CKM_RSA_PKCS, pub2.handle) == C.CKR_KEY_FUNCTION_NOT_PERMITTED
    assert init(raw.C_SignRecoverInit, C.CKM_SHA256_RSA_PKCS, priv.handle) == C.CKR_MECHANISM_INVALID
    assert init(raw.C_SignRecoverInit, C.CKM_RSA_PKCS, priv.handle) == C.CKR_OK
    assert init(raw.C_SignRecoverInit, C.CKM_RSA_PKCS, priv.handle) == C.CKR_OPERATION_ACTIVE
    rv, _ = _call_out(raw.C_SignRecover, h, b"x" * 246)  # longer than k - 11
    assert rv == C.CKR_DATA_LEN_RANGE
    assert raw.C_CloseSession(h) == C.CKR_OK
