"""What the approval page's tests share: a request source holding requests in memory (a test double of the
RequestSource interface that records answers), requests with every kind of metadata, and small real files
made here: a PNG (zlib and CRC-32 by the standard library) and a PDF written out object by object."""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

from vsc_provider.requests.model import MetadataItem, PendingRequest, RequestError

PIN = "482915"


def png(width: int, height: int, rgb: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    """A valid truecolour PNG of one colour."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def pdf(pages: list[str]) -> bytes:
    """A valid PDF 1.4 of A4 pages, each with one line of Helvetica text, with a correct xref table."""
    count = len(pages)
    font = 3 + 2 * count
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{3 + 2 * i} 0 R".encode() for i in range(count))
        + f"] /Count {count} >>".encode(),
    ]
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")
        stream = b"BT /F1 24 Tf 72 720 Td (" + escaped + b") Tj ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def logo_uri(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def request(
    request_id: str = "req-1",
    metadata: tuple[MetadataItem, ...] = (),
    *,
    rp: str = "Example Bank",
    card_label: str = "Alice's card",
    kind: str = "sign",
    ttl: float = 300,
    branding: dict[str, object] | None = None,
) -> PendingRequest:
    return PendingRequest(
        id=request_id,
        card="0123456789abcdef",
        card_label=card_label,
        kind=kind,  # type: ignore[arg-type]
        rp=rp,
        alg="ES256",
        format="jws",
        metadata=metadata,
        expires=time.time() + ttl,
        display_hash=base64.urlsafe_b64encode(hashlib.sha256(request_id.encode()).digest()).rstrip(b"=").decode(),
        branding=branding if branding is not None else {"name": "Example Identity", "colour": "#1a7f37"},
    )


@dataclass
class MemorySource:
    """Requests held in memory; approve checks the PIN against PIN and records (id, pin); reject records id."""

    requests: dict[str, PendingRequest] = field(default_factory=dict)
    approved: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def holding(cls, *requests: PendingRequest) -> MemorySource:
        return cls({r.id: r for r in requests})

    def pending(self) -> list[PendingRequest]:
        with self.lock:
            return list(self.requests.values())

    def approve(self, request_id: str, pin: str) -> None:
        with self.lock:
            if request_id not in self.requests:
                raise RequestError("this request is not pending")
            if pin != PIN:
                raise RequestError("wrong PIN: 2 tries left")
            self.approved.append((request_id, pin))
            del self.requests[request_id]

    def reject(self, request_id: str) -> None:
        with self.lock:
            if request_id not in self.requests:
                raise RequestError("this request is not pending")
            self.rejected.append(request_id)
            del self.requests[request_id]
