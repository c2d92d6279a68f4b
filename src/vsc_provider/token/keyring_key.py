"""A card's device-key secret in the Linux kernel keyring: a `user` key in the user's persistent keyring
(kept across logins; the kernel drops it after `/proc/sys/kernel/keys/persistent_keyring_expiry` seconds
without use and at every reboot), reached through libkeyutils (Debian's libkeyutils1)."""

from __future__ import annotations

import ctypes
import errno
import functools
import os

KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_USER_KEYRING = -4
# Possessor: everything; the user's other processes (a PKCS#11 host with another session keyring): view,
# read and search, so the key is found wherever this user logs in, as a 0600 file would be.
_PERM = 0x3F000000 | 0x000B0000
_KEY_TYPE = b"user"


class KeyringError(OSError):
    """The keyring refused (no libkeyutils, keyctl blocked by a sandbox, quota)."""


@functools.cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libkeyutils.so.1", use_errno=True)
    except OSError as exc:
        raise KeyringError(errno.ENOENT, "libkeyutils.so.1 is not installed (Debian: libkeyutils1)") from exc
    lib.add_key.restype = ctypes.c_int32
    lib.add_key.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32]
    lib.keyctl_get_persistent.restype = ctypes.c_long
    lib.keyctl_get_persistent.argtypes = [ctypes.c_int, ctypes.c_int32]
    lib.keyctl_search.restype = ctypes.c_long
    lib.keyctl_search.argtypes = [ctypes.c_int32, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int32]
    lib.keyctl_read.restype = ctypes.c_long
    lib.keyctl_read.argtypes = [ctypes.c_int32, ctypes.c_char_p, ctypes.c_size_t]
    lib.keyctl_setperm.restype = ctypes.c_long
    lib.keyctl_setperm.argtypes = [ctypes.c_int32, ctypes.c_uint32]
    lib.keyctl_invalidate.restype = ctypes.c_long
    lib.keyctl_invalidate.argtypes = [ctypes.c_int32]
    return lib


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise KeyringError(code, f"kernel keyring: {what}: {os.strerror(code)}")
    return result


def _keyring() -> int:
    """The persistent keyring (linked into this process's keyring, so this process possesses it); the user
    keyring where the kernel has no persistent keyrings."""
    lib = _lib()
    ring = int(lib.keyctl_get_persistent(-1, KEY_SPEC_PROCESS_KEYRING))
    if ring < 0 and ctypes.get_errno() == errno.EOPNOTSUPP:
        return KEY_SPEC_USER_KEYRING
    return _check(ring, "persistent keyring")


def available() -> bool:
    try:
        _keyring()
    except OSError:
        return False
    return True


def _find(name: str) -> int | None:
    found = int(_lib().keyctl_search(_keyring(), _KEY_TYPE, name.encode(), 0))
    if found < 0:
        if ctypes.get_errno() in (errno.ENOKEY, errno.EKEYREVOKED, errno.EKEYEXPIRED):
            return None
        _check(found, f"search {name}")
    return found


def store(name: str, secret: bytes) -> None:
    """Add a new key (refused if one of that name exists: a secret is never replaced)."""
    if _find(name) is not None:
        raise KeyringError(errno.EEXIST, f"kernel keyring: a key {name} exists already")
    lib = _lib()
    key = _check(int(lib.add_key(_KEY_TYPE, name.encode(), secret, len(secret), _keyring())), f"add {name}")
    _check(int(lib.keyctl_setperm(key, _PERM)), f"permissions of {name}")


def read(name: str) -> bytes | None:
    """The key's bytes, or None when this keyring has no such key (another machine, a reboot)."""
    key = _find(name)
    if key is None:
        return None
    buf = ctypes.create_string_buffer(256)
    size = _check(int(_lib().keyctl_read(key, buf, len(buf))), f"read {name}")
    return buf.raw[: min(size, len(buf))]


def remove(name: str) -> None:
    key = _find(name)
    if key is not None:
        _check(int(_lib().keyctl_invalidate(key)), f"remove {name}")
