"""RSA encryption and decryption: PKCS#1 v1.5, OAEP and the raw CKM_RSA_X_509, one builder a mechanism."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token.operation import Build, Cipherer, by_direction
from vsc_provider.token.rsa_padding import oaep
from vsc_provider.token.rsa_raw import RsaRaw, rsa_public_raw


def _padding(mech: Mechanism) -> padding.AsymmetricPadding:
    """CKM_RSA_PKCS or CKM_RSA_PKCS_OAEP (with its parameters checked)."""
    return padding.PKCS1v15() if mech.type == C.CKM_RSA_PKCS else oaep(mech)


# --- encryption --------------------------------------------------------------------------------------


def _encrypt_padded(mech: Mechanism, key: rsa.RSAPublicKey) -> Cipherer:
    pad = _padding(mech)

    def encrypt(data: bytes) -> bytes:
        try:
            return key.encrypt(data, pad)
        except ValueError as exc:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "data too long for this key and padding") from exc

    return Cipherer(encrypt)


def _encrypt_raw(mech: Mechanism, key: rsa.RSAPublicKey) -> Cipherer:
    size = (key.key_size + 7) // 8
    return Cipherer(lambda d: rsa_public_raw(key, d.rjust(size, b"\x00")))


# --- decryption --------------------------------------------------------------------------------------


def _whole(data: bytes, size: int) -> bytes:
    if len(data) != size:
        raise CKRError(C.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext length differs from the modulus")
    return data


def _decrypt_padded(mech: Mechanism, key: rsa.RSAPrivateKey) -> Cipherer:
    pad = _padding(mech)
    size = (key.key_size + 7) // 8

    def decrypt(data: bytes) -> bytes:
        try:
            return key.decrypt(_whole(data, size), pad)
        except ValueError as exc:
            raise CKRError(C.CKR_ENCRYPTED_DATA_INVALID, "decryption failed") from exc

    return Cipherer(decrypt)


def _decrypt_raw(mech: Mechanism, key: rsa.RSAPrivateKey) -> Cipherer:
    raw = RsaRaw(key)
    return Cipherer(lambda d: raw.decrypt(_whole(d, raw.size)))


# mechanism -> (what makes its encryptor, what makes its decryptor)
_BUILDERS: dict[int, tuple[Build[Cipherer], Build[Cipherer]]] = {
    C.CKM_RSA_PKCS: (_encrypt_padded, _decrypt_padded),
    C.CKM_RSA_PKCS_OAEP: (_encrypt_padded, _decrypt_padded),
    C.CKM_RSA_X_509: (_encrypt_raw, _decrypt_raw),
}
ENCRYPTORS, DECRYPTORS = by_direction(_BUILDERS)
