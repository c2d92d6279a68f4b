"""C_SeedRandom and C_GenerateRandom: the operating system's generator, which takes no seed from callers."""

from __future__ import annotations

import os

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.pkcs11.state import LIB


def seed_random(h: int, seed: bytes) -> None:
    LIB.session(h)
    raise CKRError(C.CKR_RANDOM_SEED_NOT_SUPPORTED, "the OS generator takes no seed")


def generate_random(h: int, length: int) -> bytes:
    LIB.session(h)
    return os.urandom(length)
