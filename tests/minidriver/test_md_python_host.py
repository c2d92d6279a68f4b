"""The minidriver library loaded by a host that is itself Python (cffi's ABI mode here, as a Python CSP shim
would load it): the library reuses the host's interpreter, and the host's garbage collector, at threshold 1
with finalizers that call the library, never starts inside a library call. Run in a child process: a host
that hangs or crashes must not take the test run with it."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import SO_PIN, USER_PIN, run_vsc
from vsc_provider import module

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 200


def _in_a_python_host(label: str, call: str) -> dict[str, Any]:
    """Make a card, run CALL (a function of this file) in a fresh Python process, and return the JSON it
    printed last."""
    run_vsc("card", "create", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN)
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    script += f"from tests.minidriver.test_md_python_host import {call.split('(')[0]}; {call}"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_a_python_host_with_an_eager_collector(vsc_home):
    seen = _in_a_python_host("Python host", f"python_host({str(module.minidriver_path())!r})")
    assert seen["acquire"] == 0 and seen["reads"] == [0]
    assert seen["collections"] > 0 and seen["inside"] == []  # no collection started inside a library call
    assert seen["finalizer_reads"] == [0]  # finalizers ran in host code, where calling the library is fine
    assert seen["cardid_len"] == 16 and seen["delete"] == 0


def test_both_libraries_from_two_threads_of_a_python_host(vsc_home, module_path):
    """The two libraries count calls in flight together: one never turns the host's collector back on while
    the other is inside a call."""
    seen = _in_a_python_host("Two threads", f"two_threads({str(module.minidriver_path())!r}, {module_path!r})")
    assert seen["initialize"] == 0 and seen["slots"] == [0] and seen["reads"] == [0]
    assert seen["collections"] > 0 and seen["inside"] == []


def _card_data(ffi: Any, libc: Any) -> tuple[Any, Any]:
    """A CARD_DATA for CardAcquireContext, and its ATR buffer (to be kept alive with it)."""
    cd = ffi.new("CARD_DATA *")
    atr = ffi.new("BYTE[]", b"\x3b\x80\x80\x01\x01")
    cd.dwVersion = 7
    cd.pbAtr, cd.cbAtr = atr, 5
    cd.pfnCspAlloc = ffi.addressof(libc, "malloc")
    cd.pfnCspReAlloc = ffi.addressof(libc, "realloc")
    cd.pfnCspFree = ffi.addressof(libc, "free")
    return cd, atr


def _collection_watcher(seen: dict[str, Any], code: tuple[str, ...]) -> Any:
    """A gc callback counting collections in seen["collections"], and naming in seen["inside"] the function
    of a file whose name holds one of CODE's strings when a collection starts inside it."""

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase != "start":
            return
        seen["collections"] += 1
        frame = sys._getframe(0)
        while frame is not None:
            if any(part in frame.f_code.co_filename for part in code):
                seen["inside"].append(frame.f_code.co_name)
                return
            frame = frame.f_back

    return on_gc


def two_threads(library: str, pkcs11_library: str) -> None:
    import threading

    import cffi

    ffi = cffi.FFI()
    ffi.cdef((ROOT / "native" / "cardmod_types.h").read_text())
    ffi.cdef("DWORD CardAcquireContext(PCARD_DATA, DWORD); void *malloc(size_t); void *realloc(void *, size_t);")
    ffi.cdef("void free(void *);")
    ffi.cdef(
        "typedef struct { unsigned char major, minor; unsigned long (*C_Initialize)(void *);"
        " unsigned long (*C_Finalize)(void *); void *C_GetInfo; void *C_GetFunctionList;"
        " unsigned long (*C_GetSlotList)(unsigned char, unsigned long *, unsigned long *); } P11;"
        "unsigned long C_GetFunctionList(P11 **);"
    )
    md, p11, libc = ffi.dlopen(library), ffi.dlopen(pkcs11_library), ffi.dlopen(None)
    table = ffi.new("P11 **")
    p11.C_GetFunctionList(table)
    seen: dict[str, Any] = {"initialize": table[0].C_Initialize(ffi.NULL), "collections": 0, "inside": []}
    cd, _atr = _card_data(ffi, libc)
    assert md.CardAcquireContext(cd, 0) == 0
    slots: set[int] = set()
    reads: set[int] = set()
    rounds = 2000

    on_gc = _collection_watcher(seen, ("vsc_provider", "glue"))

    class Garbage:
        def __init__(self) -> None:
            self.me = self

    def pkcs11_calls() -> None:
        n = ffi.new("unsigned long *")
        for _ in range(rounds):
            Garbage()
            slots.add(table[0].C_GetSlotList(1, ffi.NULL, n))

    def card_calls() -> None:
        data, size = ffi.new("PBYTE *"), ffi.new("DWORD *")
        name = ffi.new("char[]", b"cardcf")
        for _ in range(rounds):
            Garbage()
            reads.add(cd.pfnCardReadFile(cd, ffi.NULL, name, 0, data, size))
            libc.free(data[0])

    gc.callbacks.append(on_gc)
    gc.set_threshold(1)
    sys.setswitchinterval(1e-6)  # the threads take turns inside calls as often as the interpreter lets them
    threads = [threading.Thread(target=pkcs11_calls), threading.Thread(target=card_calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.set_threshold(700)
    gc.callbacks.remove(on_gc)
    seen["slots"], seen["reads"] = sorted(slots), sorted(reads)
    cd.pfnCardDeleteContext(cd)
    table[0].C_Finalize(ffi.NULL)
    print(json.dumps(seen))


def python_host(library: str) -> None:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef((ROOT / "native" / "cardmod_types.h").read_text())
    ffi.cdef("DWORD CardAcquireContext(PCARD_DATA, DWORD); void *malloc(size_t); void *realloc(void *, size_t);")
    ffi.cdef("void free(void *);")
    lib = ffi.dlopen(library)
    libc = ffi.dlopen(None)
    cd = ffi.new("CARD_DATA *")
    atr = ffi.new("BYTE[]", b"\x3b\x80\x80\x01\x01")
    name = ffi.new("WCHAR[]", "vsc-provider card")
    cd.dwVersion = 7
    cd.pbAtr, cd.cbAtr, cd.pwszCardName = atr, 5, name
    cd.pfnCspAlloc = ffi.addressof(libc, "malloc")
    cd.pfnCspReAlloc = ffi.addressof(libc, "realloc")
    cd.pfnCspFree = ffi.addressof(libc, "free")
    seen: dict[str, Any] = {"acquire": lib.CardAcquireContext(cd, 0), "collections": 0, "inside": []}
    reads: set[int] = set()
    finalizer_reads: set[int] = set()

    def read(what: bytes, into: set[int]) -> bytes:
        data = ffi.new("PBYTE *")
        size = ffi.new("DWORD *")
        into.add(cd.pfnCardReadFile(cd, ffi.NULL, ffi.new("char[]", what), 0, data, size))
        out = ffi.buffer(data[0], size[0])[:] if data[0] != ffi.NULL else b""
        libc.free(data[0])
        return out

    on_gc = _collection_watcher(seen, ("vsc_provider", "md_glue"))

    class Garbage:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            read(b"cardcf", finalizer_reads)

    gc.callbacks.append(on_gc)
    gc.set_threshold(1)
    for _ in range(ROUNDS):
        Garbage()
        read(b"cardcf", reads)
    gc.set_threshold(700)
    gc.callbacks.remove(on_gc)
    gc.collect()
    seen["cardid_len"] = len(read(b"cardid", reads))
    seen["reads"] = sorted(reads)
    seen["finalizer_reads"] = sorted(finalizer_reads)
    seen["delete"] = cd.pfnCardDeleteContext(cd)
    print(json.dumps(seen))
