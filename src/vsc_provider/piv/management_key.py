"""The PIV card management key (key reference 9B): a per-card symmetric key (AES-128/192/256 or 3DES, SP
800-78-4) that authorises GENERATE ASYMMETRIC KEY PAIR and PUT DATA, proved by challenge and response in
GENERAL AUTHENTICATE.

At rest, in the store's meta table under the card's serial (JSON), sealed like the card's other secrets: the
key itself under the device key (the card checks a response without any PIN, as a real card does), and the
card's data key wrapped under a key derived from the management key and then the device key, so that a
proved administrator can store keys and certificates. Setting the first key takes the SO PIN (it proves the
right to the data key); a card re-initialised since (a new data key) has no management key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from vsc_provider.ck.errors import CKRError
from vsc_provider.piv import objects as O
from vsc_provider.token.admin_secret import AdminSecret
from vsc_provider.token.engine import Card, Engine

KEY_SIZES = {O.ALG_3DES: 24, O.ALG_AES_128: 16, O.ALG_AES_192: 24, O.ALG_AES_256: 32}
ALG_NAMES = {"3des": O.ALG_3DES, "aes128": O.ALG_AES_128, "aes192": O.ALG_AES_192, "aes256": O.ALG_AES_256}


class ManagementKeyError(Exception):
    """No management key, or a wrong SO PIN or key while setting one."""


@dataclass(frozen=True)
class ManagementKey:
    algorithm: int
    key: bytes

    @property
    def block_size(self) -> int:
        return 8 if self.algorithm == O.ALG_3DES else 16

    def encrypt_block(self, block: bytes) -> bytes:
        """One block under the key (ECB of a single random block: the PIV challenge-response)."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if self.algorithm == O.ALG_3DES:
            from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

            cipher = Cipher(TripleDES(self.key), modes.ECB())  # noqa: S305 - one block, as specified
        else:
            cipher = Cipher(algorithms.AES(self.key), modes.ECB())  # noqa: S305 - one block, as specified
        enc = cipher.encryptor()
        return enc.update(block) + enc.finalize()


SECRET = AdminSecret("piv-management", "vsc-piv", b"vsc-piv management key")


def _entry(engine: Engine, card: Card) -> dict[str, Any] | None:
    return SECRET.read(engine, card)


def is_set(engine: Engine, card: Card) -> bool:
    return _entry(engine, card) is not None


def load(engine: Engine, card: Card) -> ManagementKey | None:
    entry = _entry(engine, card)
    if entry is None:
        return None
    key = SECRET.key(engine.device_key, card, entry)
    if key is None:
        raise ManagementKeyError("the management key does not open (another device's store?)")
    return ManagementKey(int(entry["algorithm"]), key)


def data_key(engine: Engine, card: Card, mk: ManagementKey) -> bytes:
    """The card's data key, as the proved management key holds it."""
    entry = _entry(engine, card)
    if entry is None:
        raise ManagementKeyError("this card has no management key")
    found = SECRET.data_key(engine.device_key, card, entry, mk.key)
    if found is None:
        raise ManagementKeyError("the management key's copy of the data key does not open")
    return found


def set_key(engine: Engine, card: Card, so_pin: bytes, algorithm: int, key: bytes | None = None) -> ManagementKey:
    """Store a management key (random when not given) with the SO PIN's authority (its try counted like an
    SO login). Returns it, for printing once."""
    if algorithm not in KEY_SIZES:
        raise ManagementKeyError(f"algorithm 0x{algorithm:02x} is not a management-key algorithm")
    if key is None:
        key = os.urandom(KEY_SIZES[algorithm])
    if len(key) != KEY_SIZES[algorithm]:
        raise ManagementKeyError(f"this management key has {KEY_SIZES[algorithm]} bytes")
    try:
        card_data_key = engine.verify_pin(card, True, so_pin)
    except CKRError as exc:
        raise ManagementKeyError(f"the SO PIN was refused: {exc}") from None
    SECRET.write(engine, card, SECRET.new_entry(engine.device_key, card, key, card_data_key, algorithm=algorithm))
    return ManagementKey(algorithm, key)
