"""Image files as they go into an export: their own bytes where the format allows, else PNG.

PNG, JPEG and WebP files travel byte for byte (every reader of the exported formats
decodes them; the dataset viewer of the Hub shows them). Any other format ggtqc reads
(BMP, TIFF) is decoded, turned upright by its EXIF orientation as ggtqc's filters saw it,
and written as a lossless PNG: the pixels stay the same, the file does not.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps

KEPT = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg"}
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")


def kept_extension(path: Path) -> str | None:
    """``.png``, ``.jpg`` or ``.webp`` when the file is one (by content, not by name), else None."""
    with path.open("rb") as f:
        head = f.read(12)
    for magic, extension in KEPT.items():
        if head.startswith(magic):
            return extension
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return None


def png_bytes(path: Path) -> bytes:
    """The decoded pixels of ``path`` as a lossless PNG."""
    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode not in PNG_MODES:
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def shape(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) from the header, as BasicSR's meta_info files record them."""
    with Image.open(path) as image:
        height, width = image.height, image.width
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # shown rotated by 90 degrees
            height, width = width, height
        return height, width, len(image.getbands())
