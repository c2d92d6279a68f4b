"""ISO 7816-4 command and response APDUs: short and extended forms, status words PIV uses."""

from __future__ import annotations

from dataclasses import dataclass

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY = 0x6982
SW_BLOCKED = 0x6983
SW_CONDITIONS = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNC_NOT_SUPPORTED = 0x6A81
SW_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_REF_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00


def sw_tries(left: int) -> int:
    """63Cx: a wrong reference data, x tries left (at most 15 can be said)."""
    return 0x63C0 | min(left, 15)


class ApduError(Exception):
    """A command refused with a status word."""

    def __init__(self, sw: int, why: str = "") -> None:
        super().__init__(f"{sw:04X} {why}".strip())
        self.sw = sw


@dataclass(frozen=True)
class Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int = 0  # bytes expected; 0 when absent, 256 (short) or 65536 (extended) for an Le of zero
    extended: bool = False

    @property
    def chained(self) -> bool:
        return bool(self.cla & 0x10)


def parse(raw: bytes) -> Command:
    """A command APDU in any of the seven cases (ISO 7816-4, 5.1)."""
    if len(raw) < 4:
        raise ApduError(SW_WRONG_LENGTH, "an APDU has at least four bytes")
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:
        return Command(cla, ins, p1, p2)
    if len(body) == 1:
        return Command(cla, ins, p1, p2, le=body[0] or 256)
    if body[0] != 0:  # short with Lc
        lc = body[0]
        if len(body) == 1 + lc:
            return Command(cla, ins, p1, p2, body[1:])
        if len(body) == 2 + lc:
            return Command(cla, ins, p1, p2, body[1 : 1 + lc], body[-1] or 256)
        raise ApduError(SW_WRONG_LENGTH, "Lc does not match the data")
    if len(body) == 3:  # extended, Le only
        le = int.from_bytes(body[1:3], "big")
        return Command(cla, ins, p1, p2, le=le or 65536, extended=True)
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0:
        raise ApduError(SW_WRONG_LENGTH, "an extended Lc of zero")
    data = body[3 : 3 + lc]
    rest = body[3 + lc :]
    if len(data) != lc or len(rest) not in (0, 2):
        raise ApduError(SW_WRONG_LENGTH, "Lc does not match the data")
    le = (int.from_bytes(rest, "big") or 65536) if rest else 0
    return Command(cla, ins, p1, p2, data, le, extended=True)


def response(data: bytes = b"", sw: int = SW_OK) -> bytes:
    return data + sw.to_bytes(2, "big")
