"""Where the installed PKCS#11 library is, and a p11-kit module file that registers it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

MODULE_NAME = "vsc_provider._pkcs11"


def library_path() -> Path:
    """The absolute path of the built PKCS#11 library (an error if the package was installed without it)."""
    # Once a host has loaded the library, cffi registers it as a module without an import spec: look for
    # the file beside the package instead.
    package = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = package / f"_pkcs11{suffix}"
        if candidate.is_file():
            return candidate
    spec = importlib.util.find_spec(MODULE_NAME)
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the PKCS#11 library was not built: reinstall the package (pip install .)")
    return Path(spec.origin).resolve()


def p11kit_module_text() -> str:
    return (
        "# vsc-provider virtual smart cards, written by `vsc module p11-kit`\n"
        f"module: {library_path()}\n"
        "critical: no\n"
        "trust-policy: no\n"
    )
