"""AES encryption and decryption in ECB, CBC (with or without PKCS#7 padding) and GCM, and the AES key wraps
(RFC 3394, RFC 5649), one builder a mechanism. CTR and the AES MACs are in aes_modes.py."""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import GcmParams, Mechanism
from vsc_provider.token.aes_modes import BlockStream, aes_key
from vsc_provider.token.operation import Build, Cipherer, by_direction, param_invalid

BLOCK_MODES = (C.CKM_AES_ECB, C.CKM_AES_CBC, C.CKM_AES_CBC_PAD)
KEY_WRAPS = (C.CKM_AES_KEY_WRAP, C.CKM_AES_KEY_WRAP_PAD, C.CKM_AES_KEY_WRAP_KWP)


def _iv(mech: Mechanism) -> bytes:
    if not isinstance(mech.param, bytes) or len(mech.param) != 16:
        raise param_invalid("AES-CBC needs a 16-byte IV")
    return mech.param


def _block_cipher(mech: Mechanism, key: Any) -> Cipher[Any]:
    aes = aes_key(key)
    mode: modes.ECB | modes.CBC = modes.ECB() if mech.type == C.CKM_AES_ECB else modes.CBC(_iv(mech))  # noqa: S305
    return Cipher(algorithms.AES(aes), mode)


def _unpadded(ctx: Any, rv: int, not_whole: str) -> Cipherer:
    """ECB and CBC without padding: one-shot input of whole blocks, or parts whose total is."""

    def one_shot(data: bytes) -> bytes:
        if len(data) % 16:
            raise CKRError(rv, not_whole)
        return ctx.update(data) + ctx.finalize()

    stream = BlockStream(ctx, rv)
    return Cipherer(one_shot, stream.update, stream.final)


def _gcm(mech: Mechanism) -> GcmParams:
    p = mech.param
    if not isinstance(p, GcmParams):
        raise param_invalid("AES-GCM needs CK_GCM_PARAMS")
    if not p.iv or p.tag_bits not in (96, 104, 112, 120, 128):
        raise param_invalid("AES-GCM needs an IV and a tag of 96 to 128 bits")
    if not 8 <= len(p.iv) <= 128:  # what OpenSSL (through `cryptography`) takes
        raise param_invalid("AES-GCM IVs have 8 to 128 bytes")
    return p


# --- encryption --------------------------------------------------------------------------------------


def _encrypt_blocks(mech: Mechanism, key: Any) -> Cipherer:
    cipher = _block_cipher(mech, key)
    if mech.type == C.CKM_AES_ECB and mech.param is not None:
        raise param_invalid("AES-ECB takes no parameter")
    ctx = cipher.encryptor()
    if mech.type != C.CKM_AES_CBC_PAD:
        return _unpadded(ctx, C.CKR_DATA_LEN_RANGE, "AES without padding needs whole blocks")
    padder = sym_padding.PKCS7(128).padder()
    return Cipherer(
        lambda d: ctx.update(padder.update(d) + padder.finalize()) + ctx.finalize(),
        lambda d: ctx.update(padder.update(d)),
        lambda: ctx.update(padder.finalize()) + ctx.finalize(),
    )


def _encrypt_gcm(mech: Mechanism, key: Any) -> Cipherer:
    aes = aes_key(key)
    p = _gcm(mech)
    ctx = Cipher(algorithms.AES(aes), modes.GCM(p.iv, min_tag_length=p.tag_bits // 8)).encryptor()
    ctx.authenticate_additional_data(p.aad)

    def gcm_final() -> bytes:
        return ctx.finalize() + ctx.tag[: p.tag_bits // 8]

    return Cipherer(lambda d: ctx.update(d) + gcm_final(), ctx.update, gcm_final)


def _wrap(mech: Mechanism, key: Any) -> Cipherer:
    aes = aes_key(key)
    return Cipherer(lambda d: aes_wrap(mech.type, aes, d))


def aes_wrap(m: int, key: bytes, data: bytes) -> bytes:
    if m == C.CKM_AES_KEY_WRAP:
        if len(data) < 16 or len(data) % 8:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "AES key wrap needs a multiple of 8 bytes, at least 16")
        return keywrap.aes_key_wrap(key, data)
    if not data:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "AES key wrap with padding needs at least one byte")
    return keywrap.aes_key_wrap_with_padding(key, data)


# --- decryption --------------------------------------------------------------------------------------


def _decrypt_blocks(mech: Mechanism, key: Any) -> Cipherer:
    ctx = _block_cipher(mech, key).decryptor()
    if mech.type != C.CKM_AES_CBC_PAD:
        return _unpadded(ctx, C.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext is not whole blocks")
    unpadder = sym_padding.PKCS7(128).unpadder()

    def unpad_final(last: bytes) -> bytes:
        try:
            return unpadder.update(last) + unpadder.finalize()
        except ValueError as exc:
            raise CKRError(C.CKR_ENCRYPTED_DATA_INVALID, "bad padding") from exc

    padded = _unpadded(ctx, C.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext is not whole blocks")
    return Cipherer(
        lambda d: unpad_final(padded.run(d)),
        lambda d: unpadder.update(padded.update(d)),
        lambda: unpad_final(padded.final()),
    )


def _decrypt_gcm(mech: Mechanism, key: Any) -> Cipherer:
    aes = aes_key(key)
    p = _gcm(mech)
    tag_len = p.tag_bits // 8

    def gcm_decrypt(d: bytes) -> bytes:
        if len(d) < tag_len:
            raise CKRError(C.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext shorter than the tag")
        ctx = Cipher(algorithms.AES(aes), modes.GCM(p.iv, d[-tag_len:], min_tag_length=tag_len)).decryptor()
        ctx.authenticate_additional_data(p.aad)
        try:
            return ctx.update(d[:-tag_len]) + ctx.finalize()
        except InvalidTag as exc:
            raise CKRError(C.CKR_ENCRYPTED_DATA_INVALID, "GCM tag does not verify") from exc

    return Cipherer(gcm_decrypt)  # multi-part buffers: nothing is released before the tag checks


def _unwrap(mech: Mechanism, key: Any) -> Cipherer:
    aes = aes_key(key)
    return Cipherer(lambda d: aes_unwrap(mech.type, aes, d))


def aes_unwrap(m: int, key: bytes, data: bytes) -> bytes:
    try:
        if m == C.CKM_AES_KEY_WRAP:
            return keywrap.aes_key_unwrap(key, data)
        return keywrap.aes_key_unwrap_with_padding(key, data)
    except (keywrap.InvalidUnwrap, ValueError) as exc:
        raise CKRError(C.CKR_WRAPPED_KEY_INVALID, "unwrap failed") from exc


# mechanism -> (what makes its encryptor, what makes its decryptor)
_BUILDERS: dict[int, tuple[Build[Cipherer], Build[Cipherer]]] = {
    **dict.fromkeys(BLOCK_MODES, (_encrypt_blocks, _decrypt_blocks)),
    C.CKM_AES_GCM: (_encrypt_gcm, _decrypt_gcm),
    **dict.fromkeys(KEY_WRAPS, (_wrap, _unwrap)),
}
ENCRYPTORS, DECRYPTORS = by_direction(_BUILDERS)
