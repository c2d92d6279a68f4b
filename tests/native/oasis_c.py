"""Compiles and runs a small C program against the vendored OASIS headers (native/oasis/), with the Unix platform
macros pkcs11.h asks its includer to define and no structure packing, as the module is built."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
OASIS = ROOT / "native" / "oasis"

PRELUDE = """\
#include <stddef.h>
#include <stdio.h>
#define CK_PTR *
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (*name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif
#include "pkcs11.h"
"""


def run_c(tmp_path: Path, body: list[str]) -> list[list[str]]:
    """Runs `body` (statements of main) and returns its output, each line split on blanks."""
    cc = require_tool("cc", "build-essential")
    source = tmp_path / "oasis_probe.c"
    exe = tmp_path / "oasis_probe"
    source.write_text(PRELUDE + "int main(void)\n{\n" + "".join(f"    {s}\n" for s in body) + "    return 0;\n}\n")
    built = subprocess.run(
        [cc, "-Wall", "-Werror", "-I", str(OASIS), "-o", str(exe), str(source)], capture_output=True, text=True
    )
    assert built.returncode == 0, f"cc failed on {source}:\n{built.stderr}"
    ran = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=True)
    return [line.split() for line in ran.stdout.splitlines()]


def native(name: str) -> ModuleType:
    """A script of native/ (gen_constants, functions), imported from its path: native/ is not a package."""
    key = f"vsc_native_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "native" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[key]


def generator() -> ModuleType:
    return native("gen_constants")
