"""Signatures with message recovery (C_SignRecover/C_VerifyRecover) for CKM_RSA_PKCS and CKM_RSA_X_509.

The private operation is `rsa_raw.RsaRaw`'s; the public one and the PKCS#1 v1.5 block type 1 check are here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.rsa_raw import RsaRaw, rsa_public_raw


def _size(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> int:
    return (key.key_size + 7) // 8


def make_sign_recover(mech_type: int, key: Any) -> tuple[Callable[[bytes], bytes], int]:
    """(sign function, signature length) for a private RSA key."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "signing with recovery needs an RSA private key")
    raw, size = RsaRaw(key), _size(key)
    if mech_type == C.CKM_RSA_PKCS:
        return raw.sign_pkcs1, size
    if mech_type == C.CKM_RSA_X_509:

        def sign_x509(block: bytes) -> bytes:
            if len(block) > size:
                raise CKRError(C.CKR_DATA_LEN_RANGE, "input longer than the modulus")
            return raw.sign(block.rjust(size, b"\x00"))

        return sign_x509, size
    raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech_type:x} does not sign with recovery")


def make_verify_recover(mech_type: int, key: Any) -> tuple[Callable[[bytes], bytes], int]:
    """(recover function, the longest data it can return) for a public RSA key."""
    if not isinstance(key, rsa.RSAPublicKey):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "verifying with recovery needs an RSA public key")
    size = _size(key)

    def public(signature: bytes) -> bytes:
        if len(signature) != size:
            raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "RSA signature of the wrong length")
        try:
            return rsa_public_raw(key, signature)
        except CKRError as exc:
            raise CKRError(C.CKR_SIGNATURE_INVALID, "signature is not smaller than the modulus") from exc

    if mech_type == C.CKM_RSA_X_509:
        return public, size
    if mech_type == C.CKM_RSA_PKCS:

        def recover_pkcs1(signature: bytes) -> bytes:
            block = public(signature)
            # EMSA-PKCS1-v1_5 block type 1: 00 01 FF..FF (at least 8) 00 data
            end = block.find(b"\x00", 2)
            if block[:2] != b"\x00\x01" or end < 10 or block[2:end] != b"\xff" * (end - 2):
                raise CKRError(C.CKR_SIGNATURE_INVALID, "signature does not hold a PKCS#1 v1.5 block")
            return block[end + 1 :]

        return recover_pkcs1, size - 11
    raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech_type:x} does not verify with recovery")
