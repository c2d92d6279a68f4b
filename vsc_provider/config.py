"""Where a user's cards live: VSC_HOME, or the XDG data directory, shared by the CLI and the module."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    explicit = os.environ.get("VSC_HOME")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "vsc-provider"


def store_path() -> Path:
    return home() / "store.sqlite"


def device_key_path() -> Path:
    """The device key is a file of its own so that a copy of the store alone cannot be decrypted."""
    explicit = os.environ.get("VSC_DEVICE_KEY")
    return Path(explicit) if explicit else home() / "device.key"
