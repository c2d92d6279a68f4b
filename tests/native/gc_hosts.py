"""Python hosts whose garbage collector runs as often as it can, with finalizers that call the module.

Run as a child process by test_host_gc.py (`python -m tests.native.gc_hosts KIND MODULE CARD`): a host that
hangs or crashes must not take the test run with it. Each host prints one JSON line with what it saw.

What every host checks: no garbage collection (and so no host finalizer) ever starts while a module call is
running (no vsc_provider frame on the stack when a collection starts), and the card still works afterwards.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pkcs11"))

from p11_support import CK_MECHANISM, CK_ULONG, USER_PIN, RawModule

CKO_PRIVATE_KEY = 3
CKA_CLASS = 0
CKM_ECDSA = 0x1041
CKR_OK = 0
CKR_FUNCTION_FAILED = 0x6
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
ROUNDS = 200


class Watch:
    """Counts collections, and those that start inside a module call."""

    def __init__(self) -> None:
        self.collections = 0
        self.inside: list[str] = []
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "start":
            return
        self.collections += 1
        frame = sys._getframe(0)
        while frame is not None:
            if "vsc_provider" in frame.f_code.co_filename:
                self.inside.append(frame.f_code.co_name)
                return
            frame = frame.f_back


def raw_host(module: str) -> dict[str, Any]:
    """ctypes on the function list, the collector at threshold 1, and before every module call a new piece
    of cyclic garbage whose finalizer calls C_GetSlotList, C_Finalize or C_Initialize of the same module:
    the collection that frees it starts at the next allocation, in the host or (unless the module keeps
    the collector out) inside the call."""
    m = RawModule(module)
    codes: dict[str, set[int]] = {"slots": set(), "finalize": set(), "initialize": set()}
    kinds = ("slots", "finalize", "slots", "initialize")
    made = [0]

    class Callback:
        def __init__(self, what: str) -> None:
            self.what = what
            self.me = self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            if self.what == "slots":
                n = CK_ULONG()
                codes["slots"].add(int(m.C_GetSlotList(1, None, ctypes.byref(n))))
            elif self.what == "finalize":
                codes["finalize"].add(int(m.C_Finalize(None)))
            else:
                codes["initialize"].add(int(m.C_Initialize(None)))

    def call(name: str, *args: Any) -> int:
        Callback(kinds[made[0] % len(kinds)])
        made[0] += 1
        return int(getattr(m, name)(*args))

    watch = Watch()
    gc.set_threshold(1)
    signed = 0
    for i in range(ROUNDS):
        rv = call("C_Initialize", None)
        if rv not in (CKR_OK, CKR_CRYPTOKI_ALREADY_INITIALIZED):
            raise AssertionError(f"C_Initialize -> {rv:#x}")
        n = CK_ULONG(4)
        slots = (CK_ULONG * 4)()
        if call("C_GetSlotList", 1, slots, ctypes.byref(n)) != CKR_OK:
            continue  # a finalizer finalized the module in between: allowed, the next round starts again
        h = CK_ULONG()
        if call("C_OpenSession", slots[0], 0x6, None, None, ctypes.byref(h)) != CKR_OK:
            continue
        if i % 25 == 0 and sign_once(m, h.value):
            signed += 1
        call("C_CloseSession", h)
        call("C_Finalize", None)
    gc.set_threshold(700)
    gc.collect()
    # Afterwards: the module initialises, logs in and signs as if nothing happened.
    m.C_Finalize(None)
    assert m.C_Initialize(None) == CKR_OK
    n = CK_ULONG(4)
    slots = (CK_ULONG * 4)()
    assert m.C_GetSlotList(1, slots, ctypes.byref(n)) == CKR_OK and n.value == 1
    h = m.open(slots[0])
    final_sign = sign_once(m, h)
    m.C_Finalize(None)
    return {
        "collections": watch.collections,
        "inside": sorted(set(watch.inside)),
        "codes": {k: sorted(v) for k, v in codes.items()},
        "signed": signed,
        "final_sign": final_sign,
    }


def sign_once(m: RawModule, h: int) -> bool:
    """Log in, sign with the card's EC key and log out; False when a finalizer got in between."""
    if m.login(h, USER_PIN) != CKR_OK:
        return False
    try:
        keys = m.find(h, [(CKA_CLASS, bytes(CK_ULONG(CKO_PRIVATE_KEY)))])
        mech = CK_MECHANISM(CKM_ECDSA, None, 0)
        if m.C_SignInit(h, ctypes.byref(mech), keys[0]) != CKR_OK:
            return False
        sig = ctypes.create_string_buffer(64)
        n = CK_ULONG(64)
        return m.C_Sign(h, b"\x01" * 32, 32, sig, ctypes.byref(n)) == CKR_OK and n.value == 64
    finally:
        m.C_Logout(h)


def pykcs11_host(module: str) -> dict[str, Any]:
    """PyKCS11's own pattern (its test suite): a new PyKCS11Lib per unit of work, dropped in a cycle so the
    collector runs its __del__ (which unloads under the lock that load() holds around C_Initialize)."""
    import PyKCS11

    watch = Watch()
    gc.set_threshold(1)
    for i in range(ROUNDS):
        lib = PyKCS11.PyKCS11Lib()
        lib.cycle = lib
        lib.load(module)
        slots = lib.getSlotList(tokenPresent=True)
        session = lib.openSession(slots[0])
        session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY)])
        if i % 25 == 0:
            session.login(USER_PIN)
            session.logout()
        session.closeSession()
        del lib, session
    gc.set_threshold(700)
    gc.collect()
    lib = PyKCS11.PyKCS11Lib().load(module)
    session = lib.openSession(lib.getSlotList(tokenPresent=True)[0])
    session.login(USER_PIN)
    key = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY)])[0]
    signature = bytes(session.sign(key, b"\x01" * 32, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA)))
    session.logout()
    lib.unload()
    return {"collections": watch.collections, "inside": sorted(set(watch.inside)), "final_sign": len(signature) == 64}


def python_pkcs11_host(module: str) -> dict[str, Any]:
    """python-pkcs11's pattern: one library object, a token and a session per unit of work, re-initialised
    between units, with cyclic garbage whose finalizers open sessions on the same token."""
    import pkcs11

    watch = Watch()
    lib = pkcs11.lib(module)
    opened: list[int] = []

    class Opener:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            try:
                with lib.get_token().open():
                    opened.append(1)
            except pkcs11.PKCS11Error:
                opened.append(0)

    gc.set_threshold(1)
    for i in range(ROUNDS):
        Opener()
        token = lib.get_token()
        with token.open() as session:
            list(session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PUBLIC_KEY}))
        if i % 50 == 49:
            lib.reinitialize()
    gc.set_threshold(700)
    gc.collect()
    with lib.get_token().open(user_pin=USER_PIN) as session:
        key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY)
        signature = key.sign(b"\x01" * 32, mechanism=pkcs11.Mechanism.ECDSA)
    return {
        "collections": watch.collections,
        "inside": sorted(set(watch.inside)),
        "opened": sum(opened),
        "final_sign": len(signature) == 64,
    }


def signal_host(module: str) -> dict[str, Any]:
    """A host whose signal handler calls the module: Python runs the handler between two bytecodes of
    whatever the main thread runs, so also inside a module call. Such a re-entrant call is answered
    CKR_FUNCTION_FAILED at once (never waits, never sees half-made state); between calls it works."""
    import signal
    import time

    m = RawModule(module)
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        info = (ctypes.c_ubyte * 256)()
        seen.append(int(m.C_GetTokenInfo(slot, info)))

    assert m.C_Initialize(None) == CKR_OK
    n = CK_ULONG(4)
    slots = (CK_ULONG * 4)()
    assert m.C_GetSlotList(1, slots, ctypes.byref(n)) == CKR_OK
    slot = slots[0]
    h = m.open(slot)
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0003, 0.0003)
    deadline = time.monotonic() + 20
    rounds = 0
    try:
        while time.monotonic() < deadline and seen.count(CKR_FUNCTION_FAILED) < 20:
            info = (ctypes.c_ubyte * 256)()
            assert m.C_GetTokenInfo(slot, info) == CKR_OK
            m.find(h, [(CKA_CLASS, bytes(CK_ULONG(CKO_PRIVATE_KEY)))])
            rounds += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    final_sign = sign_once(m, h)
    m.C_Finalize(None)
    return {
        "rounds": rounds,
        "codes": sorted(set(seen)),
        "reentered": seen.count(CKR_FUNCTION_FAILED),
        "between": seen.count(CKR_OK),
        "final_sign": final_sign,
    }


def fork_host(module: str) -> dict[str, Any]:
    """A thread logs in and out without a pause (each login is a long call: scrypt) while the main thread
    forks: the GC that the thread's call turned off must be on in the child, where that call does not exist."""
    import os
    import threading
    import time

    m = RawModule(module)
    assert m.C_Initialize(None) == CKR_OK
    n = CK_ULONG(4)
    slots = (CK_ULONG * 4)()
    assert m.C_GetSlotList(1, slots, ctypes.byref(n)) == CKR_OK
    h = m.open(slots[0])
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            m.login(h, USER_PIN)
            m.C_Logout(h)

    worker = threading.Thread(target=churn)
    worker.start()
    children: list[dict[str, bool]] = []
    try:
        for _ in range(8):
            time.sleep(0.05)
            parent_on = gc.isenabled()  # off while the thread is inside a call
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(write, b"1" if gc.isenabled() else b"0")
                os._exit(0)
            os.close(write)
            child_on = os.read(read, 1) == b"1"
            os.close(read)
            os.waitpid(pid, 0)
            children.append({"parent_on": parent_on, "child_on": child_on})
    finally:
        stop.set()
        worker.join(30)
    final_sign = sign_once(m, h)
    m.C_Finalize(None)
    return {"children": children, "parent_on_after": gc.isenabled(), "final_sign": final_sign}


HOSTS = {
    "raw": raw_host,
    "signal": signal_host,
    "fork": fork_host,
    "pykcs11": pykcs11_host,
    "python-pkcs11": python_pkcs11_host,
}

if __name__ == "__main__":
    print(json.dumps(HOSTS[sys.argv[1]](sys.argv[2])), flush=True)
