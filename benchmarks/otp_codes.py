"""OTP codes per second through the module's C ABI (ctypes, one C_SignInit + length query + C_Sign per code)
and through the token engine alone, on a fresh card in a temporary VSC_HOME.

    .venv/bin/python -m benchmarks.otp_codes [SECONDS]

TOTP codes only read the sealed secret (unsealed once per login); each HOTP code is one SQLite write
transaction (BEGIN IMMEDIATE, synchronous=FULL), so HOTP is bound by the disk's fsync.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "pkcs11"))

from p11_support import RawModule, mechanism

from vsc_provider import module
from vsc_provider.ck import constants as C
from vsc_provider.token import access, otp, otp_keys
from vsc_provider.token.engine import Engine

PIN, SO_PIN = "482915", "19283746"


def rate(call, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        done += 1
    return done / (time.perf_counter() - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    home = Path(tempfile.mkdtemp(prefix="vsc-otp-bench-"))
    os.environ["VSC_HOME"] = str(home)
    subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", "card", "create", "--label", "B", "--pin", PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
    )
    engine = Engine()
    card = next(iter(engine.cards.values()))
    access.login(engine, card, PIN.encode())
    totp_key = otp_keys.add(engine, card, otp.OtpSpec("totp"), os.urandom(20), "Bench", "totp")
    hotp_key = otp_keys.add(engine, card, otp.OtpSpec("hotp"), os.urandom(20), "Bench", "hotp")
    print(f"engine  TOTP: {rate(lambda: otp_keys.code(engine, card, totp_key), seconds):9.0f} codes/s")
    print(f"engine  HOTP: {rate(lambda: otp_keys.code(engine, card, hotp_key), seconds):9.0f} codes/s")

    m = RawModule(str(module.library_path()))
    slots = (ctypes.c_ulong * 4)()
    n = ctypes.c_ulong(4)
    assert m.C_Initialize(None) == 0
    assert m.C_GetSlotList(1, slots, ctypes.byref(n)) == 0
    h = m.open(slots[0])
    assert m.login(h, PIN) == 0
    buf = (ctypes.c_ubyte * 256)()

    def sign(key: int, mech: int) -> None:
        assert m.C_SignInit(h, ctypes.byref(mechanism(mech)), key) == 0
        length = ctypes.c_ulong()
        assert m.C_Sign(h, None, 0, None, ctypes.byref(length)) == 0
        assert m.C_Sign(h, None, 0, buf, ctypes.byref(length)) == 0

    print(f"PKCS#11 TOTP: {rate(lambda: sign(totp_key.handle, C.CKM_VSC_TOTP), seconds):9.0f} codes/s")
    print(f"PKCS#11 HOTP: {rate(lambda: sign(hotp_key.handle, C.CKM_HOTP), seconds):9.0f} codes/s")
    m.C_Finalize(None)


if __name__ == "__main__":
    main()
