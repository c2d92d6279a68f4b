"""Where a card's device-key layer (the outermost wrap of its data key, see login.wrap) comes from, chosen per
card at creation and kept in its record (`device_key`):

- `tpm`: a random secret sealed to this machine's TPM 2.0 (token/tpm_seal.py);
- `keyring`: a random secret in the user's persistent kernel keyring (token/keyring_key.py);
- `file`: the store's device-key file alone (token/device_key.py), as every card before back ends had.

A tpm or keyring card's layer key is HKDF over the device-key file and that secret, so it needs both. The
back end is asked at login and PIN changes only; signing uses keys unsealed at login.
"""

from __future__ import annotations

import os
from typing import Any

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import keyring_key, keywrap, tpm_seal

KINDS = ("tpm", "keyring", "file")


def kind(info: dict[str, Any] | None) -> str:
    return "file" if not info else str(info.get("kind", "file"))


def available(name: str) -> bool:
    if name == "tpm":
        return tpm_seal.available()
    if name == "keyring":
        return keyring_key.available()
    return name == "file"


def best_available() -> str:
    """The TPM when this machine has one, else the file. The keyring is never chosen by default: the kernel
    forgets its keys at reboot, and a card with the keyring back end does not open after one."""
    return "tpm" if available("tpm") else "file"


def keyring_name(serial: str) -> str:
    return f"vsc-provider:card:{serial}"


def create(name: str, serial: str) -> dict[str, Any] | None:
    """A new card's back-end record (None for `file`), its secret made and stored in the back end."""
    if name not in KINDS:
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"the device key back end is one of {', '.join(KINDS)}")
    if name == "file":
        return None
    secret = os.urandom(keywrap.KEY_SIZE)
    try:
        if name == "tpm":
            return {"kind": "tpm", **tpm_seal.seal(secret)}
        keyring_key.store(keyring_name(serial), secret)
    except OSError as exc:
        raise CKRError(C.CKR_DEVICE_ERROR, f"device key back end {name}: {exc}") from None
    return {"kind": "keyring", "name": keyring_name(serial)}


def _secret(info: dict[str, Any]) -> bytes:
    name = kind(info)
    try:
        if name == "tpm":
            return tpm_seal.unseal(info)
        if name == "keyring":
            secret = keyring_key.read(str(info.get("name")))
            if secret is None:
                raise CKRError(
                    C.CKR_DEVICE_ERROR,
                    "this card's device key is not in this user's kernel keyring (another machine, or a reboot)",
                )
            return secret
    except OSError as exc:
        raise CKRError(C.CKR_DEVICE_ERROR, f"device key back end {name}: {exc}") from None
    raise CKRError(C.CKR_DEVICE_ERROR, f"unknown device key back end {name!r} (a newer vsc made this card)")


def layer_key(device_key: bytes, serial: str, info: dict[str, Any] | None) -> bytes:
    """The key of the card's device-key layer: the device-key file's key for a file card, else HKDF-SHA256 of
    the back end's secret and the device-key file's key, bound to the card."""
    if kind(info) == "file":
        return device_key
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    material = _secret(info or {}) + device_key
    return HKDF(hashes.SHA256(), keywrap.KEY_SIZE, salt=None, info=f"vsc-card:{serial}:device-layer".encode()).derive(
        material
    )


def forget(info: dict[str, Any] | None) -> None:
    """Remove a deleted card's secret from its back end (a TPM object lives in the record only)."""
    if kind(info) == "keyring" and info is not None:
        try:
            keyring_key.remove(str(info.get("name")))
        except OSError:
            pass  # the card is gone already; a key left behind opens nothing
