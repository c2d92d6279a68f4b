"""C_SeedRandom and C_GenerateRandom: the operating system's generator is the only source.

C_SeedRandom accepts seed material, as callers written for other tokens expect, and drops it: the kernel's
generator needs no help, and a caller's "seed" must never make the output predictable.
"""

from __future__ import annotations

import os

from vsc_provider.pkcs11.state import LIB


def seed_random(h: int, seed: bytes) -> None:
    LIB.session(h)
    del seed


def generate_random(h: int, length: int) -> bytes:
    LIB.session(h)
    return os.urandom(length)
