"""Debugger checks for the `vsc` processes that unlock keys outside PKCS#11 hosts (the CLI and `vsc agent`):
they make themselves non-dumpable (no core files, no ptrace attach by the same user, /proc/PID/mem closed) and
refuse to unlock a card while a tracer is attached. VSC_ALLOW_DEBUG=1 turns both off for developers.

Never used inside a PKCS#11 host: a host's own debugging is its business, and the module must not change the
host process's dumpable flag."""

from __future__ import annotations

import ctypes
import os

from vsc_provider import log as vlog
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

log = vlog.get("vsc.tamper")


def debugging_allowed() -> bool:
    return os.environ.get("VSC_ALLOW_DEBUG", "") not in ("", "0")


def tracer_pid() -> int:
    """The pid tracing this process (TracerPid in /proc/self/status), 0 when none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass  # no procfs (not Linux): nothing to read, nothing refused
    return 0


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)))


def harden() -> None:
    """Mark this process non-dumpable (unless debugging is allowed)."""
    if debugging_allowed() or not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return
    if _prctl(PR_SET_DUMPABLE, 0) != 0:
        log.warning("could not mark the process non-dumpable: %s", os.strerror(ctypes.get_errno()))


def dumpable() -> bool:
    return _prctl(PR_GET_DUMPABLE) == 1


def check_unlock() -> None:
    """Refuse to unlock a card while this process is traced (a debugger, strace), unless allowed."""
    if debugging_allowed():
        return
    tracer = tracer_pid()
    if tracer:
        message = f"refusing to unlock a card: this process is traced by pid {tracer} (VSC_ALLOW_DEBUG=1 allows it)"
        # Written to the log when it is a file; on a terminal the error line itself is the record.
        if os.environ.get("VSC_LOG", "") not in ("", "stderr") or vlog.TRACE:
            log.warning("%s", message)
        raise CKRError(C.CKR_FUNCTION_FAILED, message)
