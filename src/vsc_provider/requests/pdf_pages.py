"""A PDF's first pages as PNG images for the approval page, rendered by poppler's `pdftoppm` in a child process.

The PDF comes from a relying party: a separate process with a time limit keeps a malformed or hostile file from
hanging or crashing the agent, and the page count and pixel size are bounded so that no PDF makes a huge page.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

MAX_PAGES = 10
LONG_SIDE_PX = 1100  # each page image fits in LONG_SIDE_PX x LONG_SIDE_PX
TIMEOUT_S = 20.0
_CACHED = 8  # rendered PDFs kept (by the SHA-256 of their bytes): showing a page again costs nothing

_PAGES_LINE = re.compile(rb"^Pages:\s+(\d+)\s*$", re.MULTILINE)


class PdfRenderError(Exception):
    """The PDF cannot be shown as images; the message is one line for the user."""


@dataclass(frozen=True)
class RenderedPdf:
    pages: tuple[bytes, ...]  # PNG images of the first pages, in order
    total_pages: int  # how many pages the document has (more than len(pages) when bounded)


_cache: OrderedDict[bytes, RenderedPdf] = OrderedDict()
_cache_lock = threading.Lock()


def render_pdf(data: bytes) -> RenderedPdf:
    """The first MAX_PAGES pages of `data` as PNG images; PdfRenderError when it cannot be rendered."""
    key = hashlib.sha256(data).digest()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    rendered = _render(data)
    with _cache_lock:
        _cache[key] = rendered
        while len(_cache) > _CACHED:
            _cache.popitem(last=False)
    return rendered


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PdfRenderError(f"the PDF cannot be previewed here: {name} is not installed (Debian: poppler-utils)")
    return path


def _run(cmd: list[str], what: str) -> bytes:
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise PdfRenderError(f"the PDF could not be rendered: {what} took longer than {TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        raise PdfRenderError("the PDF could not be rendered: it is damaged or not a PDF")
    return done.stdout


def _render(data: bytes) -> RenderedPdf:
    if not data.startswith(b"%PDF-"):
        raise PdfRenderError("the PDF could not be rendered: it does not start with %PDF-")
    pdfinfo, pdftoppm = _tool("pdfinfo"), _tool("pdftoppm")
    with tempfile.TemporaryDirectory(prefix="vsc-pdf-") as tmp:
        source = Path(tmp) / "document.pdf"
        source.write_bytes(data)
        found = _PAGES_LINE.search(_run([pdfinfo, str(source)], "pdfinfo"))
        total = int(found.group(1)) if found else 0
        if total < 1:
            raise PdfRenderError("the PDF could not be rendered: it has no pages")
        last = min(total, MAX_PAGES)
        out = Path(tmp) / "page"
        _run(
            [pdftoppm, "-png", "-f", "1", "-l", str(last), "-scale-to", str(LONG_SIDE_PX), str(source), str(out)],
            "pdftoppm",
        )
        # pdftoppm names them page-1.png or page-01.png ... (as many digits as the last page number needs)
        images = sorted(Path(tmp).glob("page-*.png"), key=lambda p: int(p.stem.rpartition("-")[2]))
        if not images:
            raise PdfRenderError("the PDF could not be rendered: no page came out")
        return RenderedPdf(tuple(p.read_bytes() for p in images), total)
