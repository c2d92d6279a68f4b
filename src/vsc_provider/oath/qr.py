"""Links read from QR code images, with zxing-cpp (its wheels carry the decoder: no system library needed)."""

from __future__ import annotations

from pathlib import Path


def read_links(image: Path) -> list[str]:
    """The text of every QR code in the image, in the decoder's order; a ValueError when there is none."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as img:
            found = zxingcpp.read_barcodes(img.convert("L"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{image}: not an image ({exc.__class__.__name__})") from None
    texts = [b.text for b in found if b.valid and b.text and b.format == zxingcpp.BarcodeFormat.QRCode]
    if not texts:
        raise ValueError(f"{image}: no QR code found")
    return texts
