"""Key layering: a card's data key under PIN-derived keys and the device key, objects under the data key.

Every blob is AES-256-GCM with a random 96-bit nonce (nonce || ciphertext || tag) and associated data that
binds it to its card and purpose, so blobs cannot be swapped between cards, objects or roles.
"""

from __future__ import annotations

import os
from typing import NamedTuple

# `cryptography` is imported by the functions that use it: C_Initialize and C_GetSlotList need none of them.

KEY_SIZE = 32
NONCE_SIZE = 12


class KdfParams(NamedTuple):
    """scrypt cost; memory is 128 * n * r bytes (16 MiB with the defaults)."""

    n: int = 2**14
    r: int = 8
    p: int = 1

    def to_json(self) -> dict[str, int]:
        return dict(self._asdict())


def derive(secret: bytes, salt: bytes, params: KdfParams) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=KEY_SIZE, n=params.n, r=params.r, p=params.p).derive(secret)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, aad: bytes) -> bytes | None:
    """The plaintext, or None when the key is wrong or the blob was altered."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], aad)
    except (InvalidTag, ValueError):
        return None


def wrap_layers(data_key: bytes, layers: list[bytes], aad: bytes) -> bytes:
    """Seal under each layer key in turn: all of them are needed to get the data key back."""
    blob = data_key
    for key in layers:
        blob = seal(key, blob, aad)
    return blob
