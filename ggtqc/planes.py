"""Low-resolution views of a pair that several filters analyse.

Generated targets add fine detail their source never had; comparing both images after area
downsampling to a common, modest size keeps what must agree (scene, layout, colour,
objects) and averages away what may legitimately differ.
"""

from __future__ import annotations

import weakref

import cv2
import numpy as np

from ggtqc.kernels.ssim import LUMA as LUMA_WEIGHTS

LUMA = np.asarray([LUMA_WEIGHTS], np.float32)
LAPLACIAN = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
# Content comparisons (colour, structure) look no finer than half the LQ's size: each analysed
# pixel then pools 2x2 LQ pixels, so a small LQ (the source of a 4x pair) is judged where its
# noise is halved and its own blur no longer decides, not at its pixels. Alignment, which
# needs every pixel of precision, does not use this.
CONTENT_SHARE = 0.5
MIN_SIDE = 8  # px: a view smaller than this on either side is not analysed (its scores are NaN)
SHARED_SIDE = 128  # px: views up to this size are computed once per decoded pair (small_pair)


def common_size(lq: np.ndarray, side: int, max_share: float = 1.0) -> tuple[int, int]:
    """``(width, height)`` with the LQ's aspect and its long side at most ``side`` and ``max_share`` of the LQ's."""
    h, w = lq.shape[:2]
    scale = min(max_share, side / max(h, w))
    return max(1, round(w * scale)), max(1, round(h * scale))


def small_pair(lq: np.ndarray, hq: np.ndarray, side: int, max_share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Both images area-resized to the same size (see :func:`common_size`), float32 RGB 0..255.

    Filters ask for the same views of a pair (``color`` and ``hallucination`` both take 64 px
    views at half the LQ's size), and area-resizing a 1024 px HQ to a size it is not an
    integer multiple of costs about 2 ms. So views of read-only images (the decoder's, which
    every filter of a batch shares) up to ``SHARED_SIDE`` px are kept while those images
    live and handed out again, read-only; other views are fresh, writable arrays.
    """
    size = common_size(lq, side, max_share)
    shareable = max(size) <= SHARED_SIDE and not lq.flags.writeable and not hq.flags.writeable
    key = (id(lq), id(hq), size)
    if shareable:
        kept = _VIEWS.get(key)
        if kept is not None and kept[0]() is lq and kept[1]() is hq:
            return kept[2], kept[3]
    small = [cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32) for image in (lq, hq)]
    if shareable:
        for view in small:
            view.flags.writeable = False

        def forget(_, key=key):
            _VIEWS.pop(key, None)

        _VIEWS[key] = (weakref.ref(lq, forget), weakref.ref(hq, forget), small[0], small[1])
    return small[0], small[1]


# (id(lq), id(hq), size) -> (weak references to lq and hq, the two views); an entry leaves
# when either image is collected, and is checked against the images themselves on use.
_VIEWS: dict[tuple[int, int, tuple[int, int]], tuple[weakref.ref, weakref.ref, np.ndarray, np.ndarray]] = {}


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation), about 10x faster on a megapixel.

    NumPy partitions for the two neighbouring ranks at once, which is slow; one partition
    and the minimum above it give the same two values.
    """
    flat = values.reshape(-1)
    dtype = flat.dtype if np.issubdtype(flat.dtype, np.floating) else np.dtype(np.float64)  # as NumPy computes
    position = q / 100 * (flat.size - 1)
    below = int(position)
    parted = flat.copy() if np.may_share_memory(flat, values) else flat  # a strided view's reshape copied already
    parted.partition(below)
    low = dtype.type(parted[below])
    if below + 1 >= flat.size:
        return float(low)
    high = dtype.type(parted[below + 1 :].min())
    fraction = dtype.type(position - below)
    one = dtype.type(1)
    return float(low + (high - low) * fraction if fraction < 0.5 else high - (high - low) * (one - fraction))


def noise_sigma(plane: np.ndarray, where: np.ndarray | None = None) -> float:
    """Noise standard deviation of a luma plane (Immerkaer's Laplacian mask, robust median).

    ``where`` (a mask of the plane's interior, two pixels smaller) limits the estimate to
    those pixels, e.g. the flattest ones, so texture is not read as noise.
    """
    response = cv2.filter2D(plane, -1, LAPLACIAN)[1:-1, 1:-1]
    if where is not None:
        response = response[where]  # before np.abs, which then reads only these
    return percentile(np.abs(response), 50) / 0.6745 / 6  # the mask's gain on white noise is 6


def luma(rgb: np.ndarray) -> np.ndarray:
    """Full-range luma, float32, of an RGB image (uint8 or float)."""
    return cv2.transform(rgb.astype(np.float32, copy=False), LUMA)
