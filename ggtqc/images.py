"""One decoder for both sides of a pair, with the same rules for each.

Rules (docs/usage.md repeats them):
- EXIF orientation is applied, so LQ and HQ are compared as a viewer shows them.
- Grayscale becomes three equal channels; palette images are expanded.
- Alpha is discarded: stored RGB values are kept, not composited over a background,
  which is what training loaders (OpenCV's ``IMREAD_COLOR``) see too.
- 16-bit samples scale to 8-bit by keeping the high byte (``v >> 8``), never by clipping.
- Only PNG, JPEG, WebP, BMP and TIFF are accepted.
- A file larger than ``max_bytes`` or an image with more than ``max_pixels`` pixels is
  refused before its pixels are decoded (decompression bombs).

Every failure raises :class:`DecodeError` with a short reason that says what is wrong.
Files are opened read-only; nothing is ever written back. An image that is not a file of its
own (a cell of a Parquet pairs file, :mod:`ggtqc.parquet`) is an :class:`ImageSource`: it
reads its bytes, and the same decoder and rules apply to them.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF"})


class DecodeError(Exception):
    """A file that cannot be used as an image; the message is the reason."""


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 100_000_000
    max_bytes: int = 256 * 1024 * 1024


class ImageSource(Protocol):
    """An image held somewhere other than a file of its own; ``str()`` names it in rows."""

    def read(self, limits: DecodeLimits) -> bytes:
        """The image's encoded bytes; :class:`DecodeError` if there are none or too many."""
        ...


Source = Union[str, "os.PathLike[str]", ImageSource]


def decode_image(source: Source, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """Read ``source`` (a file, or an :class:`ImageSource`) as a read-only RGB ``uint8``
    array of shape ``(H, W, 3)``."""
    data = read_file(source, limits) if isinstance(source, (str, os.PathLike)) else source.read(limits)
    return decode_bytes(data, limits)


def read_file(path: str | os.PathLike[str], limits: DecodeLimits = DecodeLimits()) -> bytes:
    """The bytes of the file ``path``, refused if empty or over ``limits.max_bytes``."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except OSError as e:
        raise DecodeError(f"cannot read file ({e.strerror})") from None
    if size == 0:
        raise DecodeError("empty file (0 bytes)")
    if size > limits.max_bytes:
        raise DecodeError(f"file too large ({size} bytes > cap {limits.max_bytes})")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DecodeError(f"cannot read file ({e.strerror})") from None


def decode_bytes(data: bytes, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    with warnings.catch_warnings():
        # Our own pixel cap applies; Pillow's bomb warning would only repeat it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise DecodeError("not an image (format not recognised)") from None
        except Image.DecompressionBombError:
            raise DecodeError(f"too many pixels (> cap {limits.max_pixels})") from None
        except Exception as e:  # Pillow raises many types on malformed headers
            if _riff_truncated(data):
                raise DecodeError("truncated file") from None
            raise DecodeError(f"unreadable image header ({_describe(e)})") from None
        if image.format not in ACCEPTED_FORMATS:
            raise DecodeError(f"unsupported format {image.format}")
        width, height = image.size
        if width * height > limits.max_pixels:
            raise DecodeError(f"too many pixels ({width}x{height} > cap {limits.max_pixels})")
        if width == 0 or height == 0:
            raise DecodeError(f"image has no pixels ({width}x{height})")
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise DecodeError(f"too many pixels (> cap {limits.max_pixels})") from None
        except OSError as e:
            message = str(e)
            if "truncated" in message:
                raise DecodeError("truncated file") from None
            raise DecodeError(f"corrupt image data ({_describe(e)})") from None
        except Exception as e:
            raise DecodeError(f"corrupt image data ({_describe(e)})") from None
    return _to_rgb8(image)


def _to_rgb8(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("RGB",):
        rgb = np.asarray(image)
    elif mode.startswith("I;16") or mode == "I":
        # 16-bit (or 32-bit integer) grayscale: keep the high byte of a 16-bit sample,
        # the same scaling Pillow applies to 16-bit RGB files.
        gray = np.asarray(image).astype(np.uint32)
        gray = (np.minimum(gray, 65535) >> 8).astype(np.uint8)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode == "F":
        gray = np.asarray(image, dtype=np.float32)
        peak = 1.0 if float(np.nanmax(gray)) <= 1.0 else 255.0
        gray = np.clip(np.nan_to_num(gray) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode in ("L", "1"):
        gray = np.asarray(image.convert("L"))
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        # RGBA, LA, P, PA, CMYK, YCbCr, LAB...: Pillow's conversion to RGB drops alpha
        # without compositing, as documented above.
        rgb = np.asarray(image.convert("RGB"))
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    rgb.flags.writeable = False  # shared by every filter of a batch: nobody may change it
    return rgb


def _riff_truncated(data: bytes) -> bool:
    """A WebP file shorter than the size its RIFF header declares."""
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP" and int.from_bytes(data[4:8], "little") + 8 > len(data)


def _describe(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:160]
