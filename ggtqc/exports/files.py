"""Image files as they go into an export: their own bytes where the format allows, else PNG.

PNG, JPEG and WebP files travel byte for byte (every reader of the exported formats
decodes them; the dataset viewer of the Hub shows them). Any other format ggtqc reads
(BMP, TIFF) is decoded, turned upright by its EXIF orientation as ggtqc's filters saw it,
and written as a lossless PNG: the pixels stay the same, the file does not.

An exported image is a file, or an image held in a Parquet pairs file (a
:class:`ggtqc.parquet.Cell`, named ``pairs.parquet#12/lq`` in results rows and read back by
``ggtqc.pairs.image_source``). A cell has no file to link and no name to take an extension
from: its bytes are read (one image at a time, the file streamed in slices) and its format
is told by its content (:func:`sniff`), so they are written as they are, never re-encoded
where a file of the same format would not be.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps

from ggtqc.images import DecodeError, DecodeLimits, ImageSource

KEPT = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg"}
OTHERS = {b"BM": ".bmp", b"II*\x00": ".tif", b"MM\x00*": ".tif"}
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")
READ_LIMITS = DecodeLimits(max_pixels=2**62, max_bytes=2**62)
"""A cell the run decoded is exported whatever its size (the run applied its own limits)."""

Picture = Path | ImageSource
"""One side of an exported pair: a file, or an image held in a Parquet pairs file."""


class UnreadableImage(Exception):
    """A cell that cannot be read any more (its Parquet file changed or was damaged)."""


def sniff(head: bytes) -> str | None:
    """The extension an image's first bytes say it has: ``.png``, ``.jpg``, ``.webp``,
    ``.bmp`` or ``.tif``; None if they say none of these."""
    for magic, extension in {**KEPT, **OTHERS}.items():
        if head.startswith(magic):
            return extension
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return None


def stat_of(picture: Picture) -> os.stat_result:
    """The file's status; of a cell, its Parquet file's."""
    return picture.stat() if isinstance(picture, Path) else picture.file.stat()  # type: ignore[attr-defined]


def exists(picture: Picture) -> bool:
    return picture.is_file() if isinstance(picture, Path) else picture.file.is_file()  # type: ignore[attr-defined]


def read_bytes(picture: Picture) -> bytes:
    """All the image's bytes, as stored."""
    if isinstance(picture, Path):
        return picture.read_bytes()
    try:
        return picture.read(READ_LIMITS)
    except DecodeError as e:
        raise UnreadableImage(f"{picture}: {e}") from None


def kept_extension(picture: Picture | bytes) -> str | None:
    """``.png``, ``.jpg`` or ``.webp`` when the image is one (by content, not by name), else None."""
    if isinstance(picture, bytes):
        head = picture[:12]
    elif isinstance(picture, Path):
        with picture.open("rb") as f:
            head = f.read(12)
    else:
        head = read_bytes(picture)[:12]
    extension = sniff(head)
    return extension if extension in (".png", ".jpg", ".webp") else None


def png_bytes(picture: Path | bytes) -> bytes:
    """The decoded pixels of a file (or of an image's bytes) as a lossless PNG."""
    with Image.open(_opened(picture)) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode not in PNG_MODES:
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def shape(picture: Path | bytes) -> tuple[int, int, int]:
    """(height, width, channels) from the header, as BasicSR's meta_info files record them."""
    with Image.open(_opened(picture)) as image:
        height, width = image.height, image.width
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # shown rotated by 90 degrees
            height, width = width, height
        return height, width, len(image.getbands())


def _opened(picture: Path | bytes) -> Path | BinaryIO:
    return io.BytesIO(picture) if isinstance(picture, bytes) else picture
