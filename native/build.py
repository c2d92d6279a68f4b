"""cffi build script for the PKCS#11 library (embedding mode), used by setup.py through cffi_modules.

It records, at install time, which interpreter and which site directories the library must use when a
process that is not Python loads it, and links it so that it can never be unloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from embed import init_code, library_version, set_source, with_host_guard  # noqa: E402
from functions import (  # noqa: E402
    NOT_PARALLEL,
    NOT_SUPPORTED,
    V2,
    V3,
    V32,
    Param,
    function_list_struct,
    python_functions,
    signature,
)

MODULE = "vsc_provider._pkcs11"
_LIB_VERSION = library_version()


def _args(params: list[Param]) -> str:
    return ", ".join(name for _, name in params)


def _cdef() -> str:
    types = (HERE / "pkcs11_types.h").read_text()
    externs = "".join(f'extern "Python" CK_RV py_{name}({signature(p)});\n' for name, p in python_functions())
    return types + externs + "void vsc_mark_ready(void);\n"


def _source() -> str:
    decls = "".join(f"static CK_RV py_{name}({signature(p)});\n" for name, p in python_functions())
    wrappers = []
    for name, params in [*V2, *V3, *V32]:
        body = None
        if name in NOT_SUPPORTED:
            body = "return CKR_FUNCTION_NOT_SUPPORTED;"
        elif name in NOT_PARALLEL:
            body = "return CKR_FUNCTION_NOT_PARALLEL;"
        elif name in {"C_Initialize", "C_Finalize", "C_GetFunctionList", "C_GetInterfaceList"}:
            continue
        elif name in {"C_GetInterface", "C_LoginUser", "C_GetInfo"}:
            continue
        else:
            body = f"VSC_GUARD();\n    VSC_CALL(py_{name}({_args(params)}));"
        unused = "".join(f"(void){n}; " for _, n in params) if "VSC_GUARD" not in body else ""
        wrappers.append(f"static CK_RV w_{name}({signature(params)})\n{{\n    {unused}{body}\n}}\n")

    def table(entries: list[tuple[str, list[Param]]]) -> str:
        fields = []
        for name, _params in entries:
            target = name if name in {"C_GetFunctionList", "C_GetInterfaceList", "C_GetInterface"} else f"w_{name}"
            fields.append(f"    {target},")
        return "\n".join(fields)

    tables = function_list_struct() + (
        f"static VSC_FUNCTION_LIST vsc_functions_2_40 = {{\n    {{2, 40}},\n{table(V2)}\n}};\n"
        f"static VSC_FUNCTION_LIST vsc_functions_3_0 = {{\n    {{3, 0}},\n{table([*V2, *V3])}\n}};\n"
        f"static VSC_FUNCTION_LIST vsc_functions_3_2 = {{\n    {{3, 2}},\n{table([*V2, *V3, *V32])}\n}};\n"
    )
    shim = with_host_guard((HERE / "shim.c").read_text())
    shim = shim.replace("VSC_PY_DECLS", decls).replace("VSC_WRAPPERS", "\n".join(wrappers))
    shim = shim.replace("VSC_TABLES", tables)
    return (HERE / "pkcs11_types.h").read_text() + shim


def make_builder() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(_cdef())
    ffi.embedding_api("")
    set_source(
        ffi,
        MODULE,
        _source(),
        [("VSC_LIB_MAJOR", _LIB_VERSION[0]), ("VSC_LIB_MINOR", _LIB_VERSION[1])],
    )
    ffi.embedding_init_code(init_code("glue.py", "vsc_provider.native_glue"))
    return ffi


ffibuilder = make_builder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
