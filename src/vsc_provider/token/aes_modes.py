"""AES in counter mode (CKM_AES_CTR) and the AES MACs (CKM_AES_CMAC[_GENERAL], CKM_AES_MAC[_GENERAL]).

All through `cryptography`: CTR is `modes.CTR`, CMAC is `cmac.CMAC`, and the CBC-MAC is the last block of
AES-CBC under a zero IV over the data padded with zero bytes (the mechanism's definition).
"""

from __future__ import annotations

import hmac as std_hmac
from typing import Any

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import AesCtrParams, Mechanism
from vsc_provider.token import mechanisms as M

BLOCK = 16


def aes_key(key: Any) -> bytes:
    if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "mechanism needs an AES key")
    return key


# --- ECB and CBC, multi-part --------------------------------------------------------------------


class BlockStream:
    """Multi-part ECB/CBC without padding: parts of any length, whole blocks only in total (checked at the
    final step with the mechanism's CKR, where `cryptography` would raise a plain ValueError)."""

    def __init__(self, ctx: Any, error_rv: int) -> None:
        self._ctx = ctx
        self._rv = error_rv
        self._count = 0

    def update(self, data: bytes) -> bytes:
        self._count += len(data)
        return bytes(self._ctx.update(data))

    def final(self) -> bytes:
        if self._count % BLOCK:
            raise CKRError(self._rv, "the data is not a whole number of 16-byte blocks")
        return bytes(self._ctx.finalize())


# --- CTR ---------------------------------------------------------------------------------------


class CtrCipher:
    """Encrypts and decrypts alike. `modes.CTR` counts with the whole 128-bit block; CK_AES_CTR_PARAMS
    counts only in the low ulCounterBits bits, so the operation stops (CKR_DATA_LEN_RANGE) before the
    counter would wrap within its bits, where the two would differ."""

    def __init__(self, mech: Mechanism, key: Any) -> None:
        p = mech.param
        if not isinstance(p, AesCtrParams):
            raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "AES-CTR needs CK_AES_CTR_PARAMS")
        if not 1 <= p.counter_bits <= 128:
            raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "ulCounterBits must be 1 to 128")
        start = int.from_bytes(p.counter_block, "big") & ((1 << p.counter_bits) - 1)
        self._limit = ((1 << p.counter_bits) - start) * BLOCK  # bytes before the counter wraps
        self._done = 0
        self._ctx = Cipher(algorithms.AES(aes_key(key)), modes.CTR(p.counter_block)).encryptor()

    def _take(self, data: bytes) -> bytes:
        if self._done + len(data) > self._limit:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "the counter would wrap within ulCounterBits")
        self._done += len(data)
        return self._ctx.update(data)

    def run(self, data: bytes) -> bytes:
        return self._take(data) + self._ctx.finalize()

    def update(self, data: bytes) -> bytes:
        return self._take(data)

    def final(self) -> bytes:
        return self._ctx.finalize()


# --- MACs --------------------------------------------------------------------------------------


def _mac_length(mech: Mechanism) -> int:
    default, general = M.AES_MACS[mech.type]
    if not general:
        if mech.param is not None:
            raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "this mechanism takes no parameter")
        return default
    if not isinstance(mech.param, int) or not 1 <= mech.param <= BLOCK:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "the MAC length must be 1 to 16 bytes")
    return mech.param


class _CbcMac:
    """The same interface as `cmac.CMAC` (update/finalize) for the CBC-MAC."""

    def __init__(self, key: bytes) -> None:
        self._ctx = Cipher(algorithms.AES(key), modes.CBC(b"\x00" * BLOCK)).encryptor()
        self._last = b""
        self._count = 0

    def update(self, data: bytes) -> None:
        self._count += len(data)
        out = self._ctx.update(data)
        if out:
            self._last = out[-BLOCK:]

    def finalize(self) -> bytes:
        pad = -self._count % BLOCK if self._count else BLOCK  # no data: one zero block
        if pad:
            self.update(b"\x00" * pad)
        self._ctx.finalize()
        return self._last


class AesMac:
    """A sign/verify worker (the `operation.Signer` interface) for the AES MACs."""

    def __init__(self, mech: Mechanism, key: Any) -> None:
        self._key = aes_key(key)
        self._cmac = mech.type in (C.CKM_AES_CMAC, C.CKM_AES_CMAC_GENERAL)
        self.length = _mac_length(mech)
        self._ctx: Any = None

    def _new(self) -> Any:
        return cmac.CMAC(algorithms.AES(self._key)) if self._cmac else _CbcMac(self._key)

    def sign(self, data: bytes) -> bytes:
        ctx = self._new()
        ctx.update(data)
        return bytes(ctx.finalize()[: self.length])

    def update(self, part: bytes) -> None:
        if self._ctx is None:
            self._ctx = self._new()
        self._ctx.update(part)

    def final(self) -> bytes:
        ctx, self._ctx = self._ctx or self._new(), None
        return bytes(ctx.finalize()[: self.length])

    def fresh(self) -> AesMac:
        other = AesMac.__new__(AesMac)
        other._key, other._cmac, other.length, other._ctx = self._key, self._cmac, self.length, None
        return other


class AesMacVerifier:
    """The `operation.Verifier` interface over AesMac, comparing in constant time."""

    def __init__(self, mech: Mechanism, key: Any) -> None:
        self._mac = AesMac(mech, key)

    def _check(self, expected: bytes, signature: bytes) -> None:
        if len(signature) != len(expected):
            raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "MAC of the wrong length")
        if not std_hmac.compare_digest(expected, signature):
            raise CKRError(C.CKR_SIGNATURE_INVALID, "MAC does not verify")

    def verify(self, data: bytes, signature: bytes) -> None:
        self._check(self._mac.sign(data), signature)

    def update(self, part: bytes) -> None:
        self._mac.update(part)

    def final(self, signature: bytes) -> None:
        self._check(self._mac.final(), signature)
