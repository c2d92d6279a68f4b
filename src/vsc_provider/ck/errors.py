"""The one error type every layer raises: a PKCS#11 return value with a reason for the log."""

from __future__ import annotations

from vsc_provider.ck import constants as C

_NAMES = {v: k for k, v in vars(C).items() if k.startswith("CKR_") and isinstance(v, int)}


def rv_name(rv: int) -> str:
    return _NAMES.get(rv, f"CKR_0x{rv:X}")


class CKRError(Exception):
    """Raised anywhere below the C ABI; the entry point turns it into its return value."""

    def __init__(self, rv: int, reason: str = "") -> None:
        super().__init__(f"{rv_name(rv)}: {reason}" if reason else rv_name(rv))
        self.rv = rv
        self.reason = reason


class BufferTooSmall(CKRError):
    """An output buffer was too short; `needed` is the length the caller must provide."""

    def __init__(self, needed: int) -> None:
        super().__init__(C.CKR_BUFFER_TOO_SMALL, f"{needed} bytes needed")
        self.needed = needed
