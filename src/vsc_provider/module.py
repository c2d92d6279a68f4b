"""Where the installed PKCS#11 library and minidriver card-edge library are, and a p11-kit module file that
registers the first."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

MODULE_NAME = "vsc_provider._pkcs11"
MINIDRIVER_NAME = "vsc_provider._minidriver"


def _built(module_name: str, what: str) -> Path:
    # Once a host has loaded the library, cffi registers it as a module without an import spec: look for
    # the file beside the package instead.
    package = Path(__file__).resolve().parent
    stem = module_name.rsplit(".", 1)[1]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = package / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the {what} was not built: reinstall the package (pip install .)")
    return Path(spec.origin).resolve()


def library_path() -> Path:
    """The absolute path of the built PKCS#11 library (an error if the package was installed without it)."""
    return _built(MODULE_NAME, "PKCS#11 library")


def minidriver_path() -> Path:
    """The absolute path of the built minidriver card-edge library (exports CardAcquireContext)."""
    return _built(MINIDRIVER_NAME, "minidriver card-edge library")


def p11kit_module_text() -> str:
    return (
        "# vsc-provider virtual smart cards, written by `vsc module p11-kit`\n"
        f"module: {library_path()}\n"
        "critical: no\n"
        "trust-policy: no\n"
    )
