"""The cffi declarations agree with the OASIS headers: every type native/pkcs11_types.h declares has the size, and
every struct field the offset and type, that the C compiler gives the vendored pkcs11.h; the function table the
shim fills (native/functions.py) has the functions of CK_FUNCTION_LIST, CK_FUNCTION_LIST_3_0 and
CK_FUNCTION_LIST_3_2 at the same offsets and with compatible types."""

from __future__ import annotations

from typing import Any

import cffi
import pytest

from tests.native.oasis_c import ROOT, native, run_c

# Parameters the table declares as an opaque pointer because the cdef does not declare what they point to: the
# header's type for each, substituted when the function's type is compared.
OPAQUE = {
    ("C_GetFunctionList", "ppFunctionList"): "CK_FUNCTION_LIST_PTR_PTR",
    ("C_GetInterfaceList", "pInterfacesList"): "CK_INTERFACE_PTR",
    ("C_GetInterface", "ppInterface"): "CK_INTERFACE_PTR_PTR",
    ("C_AsyncComplete", "pResult"): "CK_ASYNC_DATA_PTR",
}
TABLES = {"CK_FUNCTION_LIST": "V2", "CK_FUNCTION_LIST_3_0": "V3", "CK_FUNCTION_LIST_3_2": "V32"}


def cffi_types() -> tuple[cffi.FFI, list[str]]:
    """An FFI of pkcs11_types.h and the shim's function table, and the typedef names pkcs11_types.h declares."""
    types = (ROOT / "native" / "pkcs11_types.h").read_text()
    alone = cffi.FFI()
    alone.cdef(types)
    ffi = cffi.FFI()
    ffi.cdef(types + native("functions").function_list_struct())
    return ffi, alone.list_types()[0]


def compare(expected: dict[str, Any], found: dict[str, Any], what: str) -> None:
    """Fails naming every entry that differs (a "type ..." entry is 1 when the types are compatible)."""
    wrong = []
    for key, value in expected.items():
        if found.get(key) == value:
            continue
        if key.startswith("type "):
            wrong.append(f"{key[5:]}: the cffi type is not the header's")
        else:
            wrong.append(f"{key}: cffi {value}, OASIS header {found.get(key)}")
    assert not wrong, f"{what} differ from the OASIS headers:\n" + "\n".join(wrong)
    assert found.keys() == expected.keys()


def test_types_and_structs_match_the_oasis_headers(tmp_path):
    ffi, typedefs = cffi_types()
    assert len(typedefs) > 50
    expected: dict[str, Any] = {}
    body = []
    for name in typedefs:
        kind = ffi.typeof(name)
        expected[f"sizeof({name})"] = ffi.sizeof(kind)
        expected[f"type {name}"] = 1
        body.append(f'printf("sizeof({name}) %zu\\n", sizeof({name}));')
        body.append(f'printf("type {name} %d\\n", __builtin_types_compatible_p({name}, {ffi.getctype(kind)}));')
        if kind.kind != "struct":
            continue
        for field, info in kind.fields:
            key = f"{name}.{field}"
            expected[f"offsetof({key})"] = info.offset
            expected[f"type {key}"] = 1
            member = f"__typeof__((({name} *)0)->{field})"
            body.append(f'printf("offsetof({key}) %zu\\n", offsetof({name}, {field}));')
            body.append(
                f'printf("type {key} %d\\n", __builtin_types_compatible_p({member}, {ffi.getctype(info.type)}));'
            )
    found = {" ".join(words[:-1]): int(words[-1]) for words in run_c(tmp_path, body)}
    compare(expected, found, "sizes, offsets or types")
    assert sum(1 for key in expected if key.startswith("offsetof(")) > 80


def test_function_tables_match_the_oasis_headers(tmp_path):
    functions = native("functions")
    ffi, _ = cffi_types()
    table = ffi.typeof("VSC_FUNCTION_LIST")
    entries: list[tuple[str, list[tuple[str, str]]]] = []
    expected: dict[str, Any] = {}
    body = []
    for header_table, group in TABLES.items():
        entries += getattr(functions, group)
        last = entries[-1][0]
        expected[f"sizeof({header_table})"] = ffi.offsetof("VSC_FUNCTION_LIST", last) + ffi.sizeof("void *")
        expected[f"offsetof({header_table}.version)"] = ffi.offsetof("VSC_FUNCTION_LIST", "version")
        body.append(f'printf("sizeof({header_table}) %zu\\n", sizeof({header_table}));')
        body.append(f'printf("offsetof({header_table}.version) %zu\\n", offsetof({header_table}, version));')
        for name, params in entries:
            key = f"{header_table}.{name}"
            expected[f"offsetof({key})"] = ffi.offsetof("VSC_FUNCTION_LIST", name)
            expected[f"type {key}"] = 1
            declared = ", ".join(OPAQUE.get((name, p), ctype) for ctype, p in params) or "void"
            member = f"__typeof__((({header_table} *)0)->{name})"
            body.append(f'printf("offsetof({key}) %zu\\n", offsetof({header_table}, {name}));')
            body.append(f'printf("type {key} %d\\n", __builtin_types_compatible_p({member}, CK_RV (*)({declared})));')
    assert len(entries) == len(table.fields) - 1
    found = {" ".join(words[:-1]): int(words[-1]) for words in run_c(tmp_path, body)}
    compare(expected, found, "function tables")


def test_opaque_parameters_are_only_untyped_pointers():
    functions = native("functions")
    declared = {
        (name, p): ctype for name, params in [*functions.V2, *functions.V3, *functions.V32] for ctype, p in params
    }
    for key in OPAQUE:
        assert declared[key] in {"void *", "void **", "CK_VOID_PTR", "CK_VOID_PTR_PTR"}, key


@pytest.mark.parametrize(
    ("declared", "drifted", "named"),
    [
        ("CK_ULONG ulMaxKeySize;", "CK_BYTE ulMaxKeySize;", r"CK_MECHANISM_INFO\.ulMaxKeySize: the cffi type"),
        (
            "CK_VERSION cryptokiVersion;\n    CK_UTF8CHAR manufacturerID[32];",
            "CK_VERSION cryptokiVersion;\n    CK_UTF8CHAR manufacturerID[16];",
            r"offsetof\(CK_INFO\.flags\): cffi 24, OASIS header 40",
        ),
        ("typedef CK_ULONG CK_STATE;", "typedef CK_LONG CK_STATE;", r"CK_SESSION_INFO\.state: the cffi type"),
    ],
)
def test_a_difference_fails_naming_the_field(tmp_path, monkeypatch, declared, drifted, named):
    """pkcs11_types.h drifting from the header fails the check, naming the struct and field."""
    text = (ROOT / "native" / "pkcs11_types.h").read_text()
    assert text.count(declared) == 1
    fake_root = tmp_path / "root"
    (fake_root / "native").mkdir(parents=True)
    (fake_root / "native" / "pkcs11_types.h").write_text(text.replace(declared, drifted))
    monkeypatch.setattr(f"{__name__}.ROOT", fake_root)
    with pytest.raises(AssertionError, match=named):
        test_types_and_structs_match_the_oasis_headers(tmp_path)
