"""Helpers for the in-process tests of the built library (python-pkcs11 and ctypes).

python-pkcs11 loads the module once per process and the module's engine reads VSC_HOME at C_Initialize,
so each test module gets a store of its own: a card is made there with the real CLI, VSC_HOME points at
it, and the library is initialised again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pkcs11.attributes
from cryptography.hazmat.primitives import serialization

USER_PIN = "482915"
SO_PIN = "19283746"

# Attributes python-pkcs11 has no name for: read and written as raw bytes.
CKA_PUBLIC_KEY_INFO = 0x129
CKA_PROFILE_ID = 0x601
CKO_PROFILE = 0x9
CKP_PUBLIC_CERTIFICATES_TOKEN = 4
for _raw in (CKA_PUBLIC_KEY_INFO, CKA_PROFILE_ID):
    pkcs11.attributes.ATTRIBUTE_TYPES[_raw] = (bytes, bytes)  # type: ignore[index]


def reinitialize(lib: pkcs11.lib) -> None:
    """C_Finalize (if the library is up) then C_Initialize: the engine re-reads VSC_HOME."""
    try:
        lib.finalize()
    except pkcs11.PKCS11Error:
        pass  # finalized underneath python-pkcs11 (the ctypes tests do that)
    lib.initialize()


def vsc(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `vsc` command on the store at `home`."""
    env = {**os.environ, "VSC_HOME": str(home), "VSC_PIN_DELAY_BASE": "0.05"}
    result = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise AssertionError(f"vsc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def make_card(home: Path, label: str = "Test card") -> str:
    out = vsc(home, "card", "create", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN, "--json")
    return str(json.loads(out.stdout)["serial"])


@dataclass
class CardEnv:
    lib: pkcs11.lib
    home: Path
    serial: str

    def token(self, serial: str | None = None) -> pkcs11.Token:
        return self.lib.get_token(token_serial=(serial or self.serial).encode())

    def slot(self) -> pkcs11.Slot:
        return self.token().slot


def public_key_of(obj: pkcs11.Object) -> Any:
    """The `cryptography` public key behind a token object, read from its CKA_PUBLIC_KEY_INFO."""
    return serialization.load_der_public_key(obj[CKA_PUBLIC_KEY_INFO])
