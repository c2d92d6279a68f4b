"""Secret-key derivations: AES ECB/CBC_ENCRYPT_DATA, CONCATENATE_*, XOR_BASE_AND_DATA, EXTRACT_KEY_FROM_KEY
and HKDF (RFC 5869, through `cryptography`). Each takes the base key's value and returns the derived bytes;
the caller picks the length the new key keeps."""

from __future__ import annotations

from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import AesCbcEncryptDataParams, HkdfParams, Mechanism
from vsc_provider.token.operation import DIGESTS

_HKDF_HASHES = DIGESTS  # the PRFs HKDF takes are the digests the card offers


def _bad(what: str) -> CKRError:
    return CKRError(C.CKR_MECHANISM_PARAM_INVALID, what)


def _aes_encrypt(base: bytes, mode: modes.ECB | modes.CBC, data: bytes) -> bytes:
    if len(base) not in (16, 24, 32):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "AES encrypt-data derivation needs an AES base key")
    if not data or len(data) % 16:
        raise _bad("the data to encrypt must be whole 16-byte blocks")
    ctx = Cipher(algorithms.AES(base), mode).encryptor()
    return ctx.update(data) + ctx.finalize()


def extract_bits(base: bytes, first_bit: int, length: int) -> bytes:
    """CKM_EXTRACT_KEY_FROM_KEY: `length` bytes from bit `first_bit` of the base key on, wrapping around
    to its first bit (bit 0 is the most significant bit of the first byte)."""
    if length > len(base):
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "the extracted key is longer than the base key")
    bits = len(base) * 8
    start = first_bit % bits
    value = int.from_bytes(base, "big")
    rotated = ((value << start) | (value >> (bits - start))) & ((1 << bits) - 1) if start else value
    return rotated.to_bytes(len(base), "big")[:length]


def hkdf(params: HkdfParams, base: bytes, salt_key: bytes | None, length: int) -> bytes:
    if params.prf not in _HKDF_HASHES:
        raise _bad("unsupported HKDF hash")
    if not (params.extract or params.expand):
        raise _bad("HKDF needs bExtract, bExpand or both")
    algorithm = _HKDF_HASHES[params.prf]()
    if params.salt_type == C.CKF_HKDF_SALT_NULL:
        salt = b"\x00" * algorithm.digest_size
    elif params.salt_type == C.CKF_HKDF_SALT_DATA:
        if not params.salt:
            raise _bad("CKF_HKDF_SALT_DATA needs salt bytes")
        salt = params.salt
    elif params.salt_type == C.CKF_HKDF_SALT_KEY and salt_key is not None:
        salt = salt_key
    elif params.extract:
        raise _bad("unknown HKDF salt type")
    else:
        salt = b""
    if params.expand and length > 255 * algorithm.digest_size:
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "HKDF cannot expand to that length")
    if params.extract and params.expand:
        return HKDF(algorithm, length, salt, params.info).derive(base)
    if params.expand:
        return HKDFExpand(algorithm, length, params.info).derive(base)
    mac = hmac.HMAC(salt, algorithm)  # RFC 5869 extract: PRK = HMAC-Hash(salt, IKM)
    mac.update(base)
    return mac.finalize()


def derive(mech: Mechanism, base: bytes, other: bytes | None, length: int | None) -> bytes:
    """The derived bytes (before truncation to the new key's length). `other` is the second key's value
    (CONCATENATE_BASE_AND_KEY) or the salt key's (HKDF); `length` the requested CKA_VALUE_LEN, if any."""
    m, p = mech.type, mech.param
    if m == C.CKM_AES_ECB_ENCRYPT_DATA:
        if not isinstance(p, bytes):
            raise _bad("needs CK_KEY_DERIVATION_STRING_DATA")
        return _aes_encrypt(base, modes.ECB(), p)  # noqa: S305 - the mechanism is defined on ECB
    if m == C.CKM_AES_CBC_ENCRYPT_DATA:
        if not isinstance(p, AesCbcEncryptDataParams):
            raise _bad("needs CK_AES_CBC_ENCRYPT_DATA_PARAMS")
        return _aes_encrypt(base, modes.CBC(p.iv), p.data)
    if m == C.CKM_CONCATENATE_BASE_AND_KEY:
        assert other is not None
        return base + other
    if m in (C.CKM_CONCATENATE_BASE_AND_DATA, C.CKM_CONCATENATE_DATA_AND_BASE, C.CKM_XOR_BASE_AND_DATA):
        if not isinstance(p, bytes) or not p:
            raise _bad("needs CK_KEY_DERIVATION_STRING_DATA with data")
        if m == C.CKM_CONCATENATE_BASE_AND_DATA:
            return base + p
        if m == C.CKM_CONCATENATE_DATA_AND_BASE:
            return p + base
        return bytes(a ^ b for a, b in zip(base, p, strict=False))
    if m == C.CKM_EXTRACT_KEY_FROM_KEY:
        if not isinstance(p, int):
            raise _bad("needs CK_EXTRACT_PARAMS")
        if length is None:
            raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKM_EXTRACT_KEY_FROM_KEY needs CKA_VALUE_LEN")
        return extract_bits(base, p, length)
    if m == C.CKM_HKDF_DERIVE:
        if not isinstance(p, HkdfParams):
            raise _bad("needs CK_HKDF_PARAMS")
        if p.expand and length is None:
            raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "HKDF expansion needs CKA_VALUE_LEN")
        return hkdf(p, base, other, length or 0)
    raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{m:x} does not derive secret keys")
