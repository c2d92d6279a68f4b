"""The device key: one random key per user and machine, in a file readable by the user only (0600 in a 0700
folder), that every card's wrapped data key and every public-object key depend on, so that a store copied to
another machine does not open."""

from __future__ import annotations

import errno
import os

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import keywrap


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _create(path: str) -> None:
    """Write a new key beside the path and link it in: atomic, and never replaces a key another process
    created first."""
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", mode=0o700, exist_ok=True)
    key = os.urandom(keywrap.KEY_SIZE)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    finally:
        os.unlink(tmp)


def load_device_key(where: str | os.PathLike[str]) -> bytes:
    """The device key (created on first use, readable by the user only)."""
    path = os.fspath(where)
    try:
        data = _read(path)
    except FileNotFoundError:
        _create(path)
        data = _read(path)
    if len(data) != keywrap.KEY_SIZE:
        raise CKRError(C.CKR_DEVICE_ERROR, f"device key {path} is damaged")
    return data


def public_object_key(device_key: bytes, serial: str) -> bytes:
    """The key that seals a compatible card's CKA_PRIVATE=false keys: derived from the device key and the
    card's serial (HKDF-SHA256), so such a key is usable without login yet still encrypted at rest, and a
    store copied to another machine does not open."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = f"vsc-card:{serial}:public-objects".encode()
    return HKDF(hashes.SHA256(), keywrap.KEY_SIZE, salt=None, info=info).derive(device_key)
