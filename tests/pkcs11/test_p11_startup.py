"""What loading the module costs a host that only lists slots (p11-kit's proxy does it in every program).

A fresh Python process loads the real library with ctypes, calls C_Initialize and C_GetSlotList, and reports
which heavy modules got imported; `cryptography` and asn1crypto must wait for the first key operation.
"""

from __future__ import annotations

import json
import subprocess
import sys

HOST = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
table = ctypes.POINTER(ctypes.c_void_p)()
assert lib.C_GetFunctionList(ctypes.byref(table)) == 0
# CK_FUNCTION_LIST: a 2-byte version, then pointers in the standard's order
base = ctypes.cast(table, ctypes.c_void_p).value + ctypes.sizeof(ctypes.c_void_p)
entry = lambda i, *args: ctypes.cast(ctypes.c_void_p.from_address(base + i * ctypes.sizeof(ctypes.c_void_p)).value,
                                     ctypes.CFUNCTYPE(ctypes.c_ulong, *args))
initialize = entry(0, ctypes.c_void_p)
get_slot_list = entry(4, ctypes.c_ubyte, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong))
before = set(sys.modules)
assert initialize(None) == 0
count = ctypes.c_ulong(0)
assert get_slot_list(1, None, ctypes.byref(count)) == 0
slots = (ctypes.c_ulong * max(count.value, 1))()
assert get_slot_list(1, slots, ctypes.byref(count)) == 0
after = set(sys.modules)
print(json.dumps({"slots": count.value, "loaded": sorted(after - before)}))
"""


def test_listing_slots_does_not_load_cryptography(module_path, card):
    out = subprocess.run(
        [sys.executable, "-c", HOST, module_path], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    report = json.loads(out)
    assert report["slots"] == 1
    roots = {name.split(".")[0] for name in report["loaded"]}
    assert "vsc_provider" in roots  # the token engine really started
    for heavy in ("cryptography", "asn1crypto", "logging", "dataclasses", "pathlib"):
        assert heavy not in roots, f"{heavy} imported at C_Initialize/C_GetSlotList: {sorted(roots)}"
