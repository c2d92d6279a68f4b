"""Escrowed (server-generated) private keys, PIN verifiers and server secrets sealed at rest: AES-256-GCM
under the server's escrow key.

The escrow key lives in its own file in the data directory (`escrow-key`, mode 0600), apart from the
SQLite file, so a copy of the database alone holds no usable key. Each blob is bound to its device and
key id (associated data), so blobs cannot be swapped between devices.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from vsc_provider.token import keywrap

MAGIC = b"vsc-escrow-1:"
FIELD_MAGIC = b"vsc-sealed-1:"


def _aad(device: str, key_id: str) -> bytes:
    return f"vsc-escrow:{device}:{key_id}".encode()


class EscrowVault:
    def __init__(self, data: Path) -> None:
        self.path = data / "escrow-key"
        self.key = self._load_or_create()

    def _load_or_create(self) -> bytes:
        if not self.path.exists():
            fd = -1
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, secrets.token_bytes(keywrap.KEY_SIZE))
                os.fsync(fd)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
            finally:
                if fd >= 0:
                    os.close(fd)
        key = self.path.read_bytes()
        if len(key) != keywrap.KEY_SIZE:
            raise ValueError(f"{self.path} is damaged: it must hold {keywrap.KEY_SIZE} bytes")
        return key

    def seal(self, device: str, key_id: str, pkcs8: bytes) -> bytes:
        return MAGIC + keywrap.seal(self.key, pkcs8, _aad(device, key_id))

    def unseal(self, device: str, key_id: str, blob: bytes) -> bytes:
        if not blob.startswith(MAGIC):
            raise ValueError("not a sealed escrow blob")
        plain = keywrap.unseal(self.key, blob[len(MAGIC) :], _aad(device, key_id))
        if plain is None:
            raise ValueError("the escrow blob does not open with this server's escrow key")
        return plain

    @staticmethod
    def is_sealed(blob: bytes) -> bool:
        return blob.startswith(MAGIC)

    # a device's server-held secrets (PIN verifier, server secret) sealed the same way, bound to the device
    # and the column, so a copy of the database alone offers nothing to guess a PIN against

    def seal_field(self, device: str, name: str, plain: bytes) -> bytes:
        return FIELD_MAGIC + keywrap.seal(self.key, plain, f"vsc-device:{device}:{name}".encode())

    def unseal_field(self, device: str, name: str, blob: bytes) -> bytes:
        if not blob.startswith(FIELD_MAGIC):
            return blob  # written in clear by an earlier version: sealed at the next start
        plain = keywrap.unseal(self.key, blob[len(FIELD_MAGIC) :], f"vsc-device:{device}:{name}".encode())
        if plain is None:
            raise ValueError(f"device {device}'s {name} does not open with this server's key")
        return plain
