"""BER-TLV as PIV uses it (tags of one to three bytes, definite lengths up to three bytes): encoding, not
cryptography. Values are kept as bytes; nested templates are read by parsing a value again."""

from __future__ import annotations


class TlvError(ValueError):
    """Data that is not well-formed BER-TLV."""


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return b"\x81" + bytes([n])
    if n <= 0xFFFF:
        return b"\x82" + n.to_bytes(2, "big")
    return b"\x83" + n.to_bytes(3, "big")


def tag_bytes(tag: int) -> bytes:
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def tlv(tag: int, value: bytes = b"") -> bytes:
    return tag_bytes(tag) + length(len(value)) + value


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, value) pairs at one level, in order."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        start = i
        first = data[i]
        i += 1
        if first & 0x1F == 0x1F:
            while True:
                if i >= len(data):
                    raise TlvError("truncated tag")
                i += 1
                if not data[i - 1] & 0x80:
                    break
        tag = int.from_bytes(data[start:i], "big")
        if i >= len(data):
            raise TlvError("missing length")
        n = data[i]
        i += 1
        if n & 0x80:
            count = n & 0x7F
            if count == 0 or count > 3 or i + count > len(data):
                raise TlvError("bad length")
            n = int.from_bytes(data[i : i + count], "big")
            i += count
        if i + n > len(data):
            raise TlvError("value runs past the data")
        out.append((tag, data[i : i + n]))
        i += n
    return out


def as_dict(data: bytes) -> dict[int, bytes]:
    """One level as a mapping (the first of repeated tags)."""
    found: dict[int, bytes] = {}
    for tag, value in parse(data):
        found.setdefault(tag, value)
    return found
