"""Where a user's cards live: VSC_HOME, or the XDG data directory, shared by the CLI and the module.

Paths are plain strings here: the module's start-up path does not import `pathlib` (with `urllib.parse` and
`ipaddress`, ~4 ms of every host's C_Initialize).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def home_dir() -> str:
    explicit = os.environ.get("VSC_HOME")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(xdg, "vsc-provider")


def home() -> Path:
    from pathlib import Path

    return Path(home_dir())


def store_path() -> str:
    return os.path.join(home_dir(), "store.sqlite")


def device_key_path() -> str:
    """The device key is a file of its own so that a copy of the store alone cannot be decrypted."""
    return os.environ.get("VSC_DEVICE_KEY") or os.path.join(home_dir(), "device.key")


def tpm_tcti() -> str | None:
    """The TPM connection as a TSS TCTI string (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`,
    `tabrmd:`): VSC_TPM_TCTI, else the kernel's resource manager when the machine has one, else None."""
    explicit = os.environ.get("VSC_TPM_TCTI")
    if explicit:
        return explicit
    return "device:/dev/tpmrm0" if os.path.exists("/dev/tpmrm0") else None
