"""Helpers for the in-process tests of the built library (python-pkcs11 and ctypes).

python-pkcs11 loads the module once per process and the module's engine reads VSC_HOME at C_Initialize,
so each test module gets a store of its own: a card is made there with the real CLI, VSC_HOME points at
it, and the library is initialised again.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
CKA_CERTIFICATE_CATEGORY = 0x87
CKO_PROFILE = 0x9
CKP_PUBLIC_CERTIFICATES_TOKEN = 4
for _raw in (CKA_PUBLIC_KEY_INFO, CKA_PROFILE_ID, CKA_CERTIFICATE_CATEGORY):
    pkcs11.attributes.ATTRIBUTE_TYPES[_raw] = (bytes, bytes)  # type: ignore[index]


def reinitialize(lib: pkcs11.lib) -> None:
    """C_Finalize (if the library is up) then C_Initialize: the engine re-reads VSC_HOME."""
    try:
        lib.finalize()
    except pkcs11.PKCS11Error:
        pass  # finalized underneath python-pkcs11 (the ctypes tests do that)
    lib.initialize()


def vsc(home: Path, *args: str, delay: str = "0.05", check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real `vsc` command on the store at `home` (PIN waiting periods of `delay` seconds)."""
    env = {**os.environ, "VSC_HOME": str(home), "VSC_PIN_DELAY_BASE": delay}
    result = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"vsc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@contextmanager
def store_loaded(lib: pkcs11.lib, home: Path) -> Iterator[None]:
    """VSC_HOME points at `home` and the library is initialised again on it; the old value comes back after."""
    previous = os.environ.get("VSC_HOME")
    os.environ["VSC_HOME"] = str(home)
    reinitialize(lib)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("VSC_HOME", None)
        else:
            os.environ["VSC_HOME"] = previous


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


# --- ctypes: the raw C ABI, for what python-pkcs11 cannot express ------------------------------

CK_ULONG = ctypes.c_ulong
CK_RV = CK_ULONG


class CK_VERSION(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class CK_ATTRIBUTE(ctypes.Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", ctypes.c_void_p), ("ulValueLen", CK_ULONG)]


class CK_MECHANISM(ctypes.Structure):
    _fields_ = [("mechanism", CK_ULONG), ("pParameter", ctypes.c_void_p), ("ulParameterLen", CK_ULONG)]


class CK_GCM_PARAMS(ctypes.Structure):
    _fields_ = [
        ("pIv", ctypes.c_void_p),
        ("ulIvLen", CK_ULONG),
        ("ulIvBits", CK_ULONG),
        ("pAAD", ctypes.c_void_p),
        ("ulAADLen", CK_ULONG),
        ("ulTagBits", CK_ULONG),
    ]


class CK_C_INITIALIZE_ARGS(ctypes.Structure):
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", CK_ULONG),
        ("pReserved", ctypes.c_void_p),
    ]


class CK_INTERFACE(ctypes.Structure):
    _fields_ = [("pInterfaceName", ctypes.c_char_p), ("pFunctionList", ctypes.c_void_p), ("flags", CK_ULONG)]


class CK_SESSION_INFO(ctypes.Structure):
    _fields_ = [("slotID", CK_ULONG), ("state", CK_ULONG), ("flags", CK_ULONG), ("ulDeviceError", CK_ULONG)]


# The 2.40 function list in table order, each with its parameters: u = CK_ULONG, p = pointer.
SIGNATURES: list[tuple[str, str]] = [
    ("C_Initialize", "p"),
    ("C_Finalize", "p"),
    ("C_GetInfo", "p"),
    ("C_GetFunctionList", "p"),
    ("C_GetSlotList", "upp"),
    ("C_GetSlotInfo", "up"),
    ("C_GetTokenInfo", "up"),
    ("C_GetMechanismList", "upp"),
    ("C_GetMechanismInfo", "uup"),
    ("C_InitToken", "upup"),
    ("C_InitPIN", "upu"),
    ("C_SetPIN", "upupu"),
    ("C_OpenSession", "uuppp"),
    ("C_CloseSession", "u"),
    ("C_CloseAllSessions", "u"),
    ("C_GetSessionInfo", "up"),
    ("C_GetOperationState", "upp"),
    ("C_SetOperationState", "upuuu"),
    ("C_Login", "uupu"),
    ("C_Logout", "u"),
    ("C_CreateObject", "upup"),
    ("C_CopyObject", "uupup"),
    ("C_DestroyObject", "uu"),
    ("C_GetObjectSize", "uup"),
    ("C_GetAttributeValue", "uupu"),
    ("C_SetAttributeValue", "uupu"),
    ("C_FindObjectsInit", "upu"),
    ("C_FindObjects", "upup"),
    ("C_FindObjectsFinal", "u"),
    ("C_EncryptInit", "upu"),
    ("C_Encrypt", "upupp"),
    ("C_EncryptUpdate", "upupp"),
    ("C_EncryptFinal", "upp"),
    ("C_DecryptInit", "upu"),
    ("C_Decrypt", "upupp"),
    ("C_DecryptUpdate", "upupp"),
    ("C_DecryptFinal", "upp"),
    ("C_DigestInit", "up"),
    ("C_Digest", "upupp"),
    ("C_DigestUpdate", "upu"),
    ("C_DigestKey", "uu"),
    ("C_DigestFinal", "upp"),
    ("C_SignInit", "upu"),
    ("C_Sign", "upupp"),
    ("C_SignUpdate", "upu"),
    ("C_SignFinal", "upp"),
    ("C_SignRecoverInit", "upu"),
    ("C_SignRecover", "upupp"),
    ("C_VerifyInit", "upu"),
    ("C_Verify", "upupu"),
    ("C_VerifyUpdate", "upu"),
    ("C_VerifyFinal", "upu"),
    ("C_VerifyRecoverInit", "upu"),
    ("C_VerifyRecover", "upupp"),
    ("C_DigestEncryptUpdate", "upupp"),
    ("C_DecryptDigestUpdate", "upupp"),
    ("C_SignEncryptUpdate", "upupp"),
    ("C_DecryptVerifyUpdate", "upupp"),
    ("C_GenerateKey", "uppup"),
    ("C_GenerateKeyPair", "uppupupp"),
    ("C_WrapKey", "upuupp"),
    ("C_UnwrapKey", "upupupup"),
    ("C_DeriveKey", "upupup"),
    ("C_SeedRandom", "upu"),
    ("C_GenerateRandom", "upu"),
    ("C_GetFunctionStatus", "u"),
    ("C_CancelFunction", "u"),
    ("C_WaitForSlotEvent", "upp"),
]


class CK_FUNCTION_LIST(ctypes.Structure):
    _fields_ = [("version", CK_VERSION), *((name, ctypes.c_void_p) for name, _ in SIGNATURES)]


_ARG_TYPES = {"u": CK_ULONG, "p": ctypes.c_void_p}


class RawModule:
    """The module through its C function list, called with ctypes (which releases the GIL, as C hosts do).

    `m.C_Sign(h, data, len(data), None, ctypes.byref(n))` returns the CK_RV; pointer arguments take None,
    bytes, ctypes buffers or ctypes.byref(...).
    """

    def __init__(self, path: str) -> None:
        self.dll = ctypes.CDLL(path)
        self.dll.C_GetFunctionList.restype = CK_RV
        self.dll.C_GetFunctionList.argtypes = [ctypes.c_void_p]
        self.dll.C_GetInterfaceList.restype = CK_RV
        self.dll.C_GetInterfaceList.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.dll.C_GetInterface.restype = CK_RV
        self.dll.C_GetInterface.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, CK_ULONG]
        table = ctypes.POINTER(CK_FUNCTION_LIST)()
        rv = self.dll.C_GetFunctionList(ctypes.byref(table))
        assert rv == 0, rv
        self.functions = table.contents
        self._calls: dict[str, Any] = {}
        for name, sig in SIGNATURES:
            proto = ctypes.CFUNCTYPE(CK_RV, *(_ARG_TYPES[c] for c in sig))
            self._calls[name] = proto(getattr(self.functions, name))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._calls[name]
        except KeyError:
            raise AttributeError(name) from None

    # conveniences over the common calls
    def open(self, slot: int, rw: bool = True) -> int:
        h = CK_ULONG()
        flags = 0x4 | (0x2 if rw else 0)
        rv = self.C_OpenSession(slot, flags, None, None, ctypes.byref(h))
        assert rv == 0, hex(rv)
        return h.value

    def login(self, h: int, pin: str, user_type: int = 1) -> int:
        raw = pin.encode()
        return int(self.C_Login(h, user_type, raw, len(raw)))

    def find(self, h: int, template: list[tuple[int, bytes]]) -> list[int]:
        attrs, keep = make_template(template)
        rv = self.C_FindObjectsInit(h, attrs, len(template))
        assert rv == 0, hex(rv)
        out = (CK_ULONG * 64)()
        n = CK_ULONG()
        rv = self.C_FindObjects(h, out, 64, ctypes.byref(n))
        assert rv == 0, hex(rv)
        assert self.C_FindObjectsFinal(h) == 0
        del keep
        return list(out[: n.value])

    def session_info(self, h: int) -> CK_SESSION_INFO:
        info = CK_SESSION_INFO()
        rv = self.C_GetSessionInfo(h, ctypes.byref(info))
        assert rv == 0, hex(rv)
        return info


def ulong(value: int) -> bytes:
    return bytes(CK_ULONG(value))


def make_template(pairs: list[tuple[int, bytes]]) -> tuple[Any, list[Any]]:
    """A CK_ATTRIBUTE array over the given raw values (and the buffers it points into, to keep alive)."""
    attrs = (CK_ATTRIBUTE * max(1, len(pairs)))()
    keep = []
    for i, (attr, value) in enumerate(pairs):
        buf = ctypes.create_string_buffer(value, len(value)) if value else None
        keep.append(buf)
        attrs[i].type = attr
        attrs[i].pValue = ctypes.cast(buf, ctypes.c_void_p) if buf is not None else None
        attrs[i].ulValueLen = len(value)
    return attrs, keep


def mechanism(mech_type: int, param: Any = None) -> CK_MECHANISM:
    """A CK_MECHANISM over a ctypes parameter (kept alive by the mechanism object)."""
    if param is None:
        return CK_MECHANISM(mech_type, None, 0)
    mech = CK_MECHANISM(mech_type, ctypes.cast(ctypes.byref(param), ctypes.c_void_p), ctypes.sizeof(param))
    mech.keep = param  # the pointer alone does not keep the parameter alive
    return mech


def call_out(fn: Any, *args: Any) -> tuple[int, bytes]:
    """The two-call convention for a function whose last two arguments are (buffer, length pointer): the
    length query, then the call with a buffer of that size. Returns (CK_RV, output)."""
    n = CK_ULONG()
    rv = fn(*args, None, ctypes.byref(n))
    if rv != 0:
        return int(rv), b""
    buf = (ctypes.c_ubyte * max(1, n.value))()
    rv = fn(*args, buf, ctypes.byref(n))
    return int(rv), bytes(buf[: n.value])


def secret_key(raw: RawModule, h: int, value: bytes, key_type: int, **flags: bool) -> int:
    """A readable secret key (CKA_SENSITIVE false) made with C_CreateObject; flags name CKA_ booleans."""
    pairs = [
        (0x0, ulong(0x4)),  # CKA_CLASS: CKO_SECRET_KEY
        (0x100, ulong(key_type)),  # CKA_KEY_TYPE
        (0x11, value),  # CKA_VALUE
        (0x103, b"\x00"),  # CKA_SENSITIVE
        (0x162, b"\x01"),  # CKA_EXTRACTABLE
        *((BOOL_ATTRS[name], b"\x01" if on else b"\x00") for name, on in flags.items()),
    ]
    attrs, keep = make_template(pairs)
    handle = CK_ULONG()
    rv = raw.C_CreateObject(h, attrs, len(pairs), ctypes.byref(handle))
    assert rv == 0, hex(rv)
    del keep
    return handle.value


BOOL_ATTRS = {
    "encrypt": 0x104,
    "decrypt": 0x105,
    "wrap": 0x106,
    "unwrap": 0x107,
    "sign": 0x108,
    "verify": 0x10A,
    "derive": 0x10C,
}
