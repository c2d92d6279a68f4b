"""cffi build script for the minidriver card-edge library (`vsc_provider._minidriver`, embedding mode), used by
setup.py through cffi_modules beside build.py. It exports CardAcquireContext with the Smart Card Minidriver
Specification's C signature; the functions it hands out in CARD_DATA enter Python (md_glue.py) through
host_guard.c's guards, as the PKCS#11 library's do."""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from embed import init_code, set_source, with_host_guard  # noqa: E402
from md_functions import ACQUIRE, FUNCTIONS, Param  # noqa: E402

MODULE = "vsc_provider._minidriver"
_C_PRELUDE = "#include <stddef.h>\n#include <stdint.h>\n#include <uchar.h>\n"


def _signature(params: list[Param]) -> str:
    return ", ".join(f"{ctype} {name}" for ctype, name in params)


def _args(params: list[Param]) -> str:
    return ", ".join(name for _, name in params)


def _python_functions() -> list[tuple[str, list[Param]]]:
    return [("CardAcquireContext", ACQUIRE), *((name, params) for name, params, _ in FUNCTIONS)]


def _cdef() -> str:
    types = (HERE / "cardmod_types.h").read_text()
    externs = "".join(f'extern "Python" DWORD py_{n}({_signature(p)});\n' for n, p in _python_functions())
    helpers = "void vsc_mark_ready(void);\nDWORD vsc_md_give(PCARD_DATA, const char *, DWORD, PBYTE *);\n"
    return types + externs + helpers


def _source() -> str:
    decls = "".join(f"static DWORD py_{n}({_signature(p)});\n" for n, p in _python_functions())
    wrappers = "".join(
        f"static DWORD md_{name}({_signature(params)})\n{{\n"
        "    if (!pCardData)\n        return SCARD_E_INVALID_PARAMETER;\n"
        f"    VSC_MD_CALL(py_{name}({_args(params)}));\n}}\n\n"
        for name, params, _ in FUNCTIONS
    )
    fill = "".join(
        f"    if (pCardData->dwVersion >= {version})\n        pCardData->pfn{name} = md_{name};\n"
        for name, _, version in FUNCTIONS
    )
    shim = with_host_guard((HERE / "md_shim.c").read_text())
    shim = shim.replace("VSC_PY_DECLS", decls).replace("VSC_MD_WRAPPERS", wrappers).replace("VSC_MD_FILL", fill)
    return _C_PRELUDE + (HERE / "cardmod_types.h").read_text() + shim


def make_builder() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(_cdef())
    ffi.embedding_api("")
    set_source(ffi, MODULE, _source(), [])
    ffi.embedding_init_code(init_code("md_glue.py", "vsc_provider.md_glue"))
    return ffi


ffibuilder = make_builder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
