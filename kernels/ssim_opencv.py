"""The fast CPU path of the downsampled SSIM, built on OpenCV's SIMD routines.

Exact area pooling without float conversion of the full-size image: OpenCV's 2x area
resize of a uint16 image returns the rounded mean of each 2x2 block, so pre-multiplying by
4 makes it return the exact block *sum*. Two such halvings give exact 4x4 sums, and so on;
other block sizes take the generic area resize in float32. Luma and the 1/block**2 scale
then apply to the small pooled planes. Pairs of a batch run in parallel threads (OpenCV
releases the GIL).

Floating-point input (0..1) is not converted at full size either: an interleaved image is
turned into luma by one ``cvtColor`` pass (whose weights are the definition's), planes are
pooled one by one, and halvings by 2x area resize (SIMD for one channel) pool the float
planes, down to the small size where the 255 scale and the weights apply. float32 is read
where it lies; other float types are converted to it first.

Both memory layouts are read where they lie: a channels-last image is one interleaved
``(H, W, 3)`` array, and an NCHW image is three contiguous planes, each pooled on its own
before the luma weights combine the small planes. No full-size transpose is made.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from ggtqc.kernels.ssim import C1, C2, C3, LUMA, RADIUS, Geometry, SSIMResult, gaussian_window, tile_bounds

_TAPS = np.asarray(gaussian_window(), dtype=np.float32).reshape(-1, 1)


def ssim_opencv(lq: torch.Tensor, hq: torch.Tensor, geometry: Geometry) -> SSIMResult:
    g = geometry
    n = g.batch
    results = ssim_pairs([_image(i) for i in lq], [_image(i) for i in hq], [g.factor] * n, [g.scale] * n, [g.grid] * n)
    ssim, structure, ssim_tiles, structure_tiles = zip(*results)
    tiles = g.grid is not None
    return SSIMResult(
        torch.tensor(ssim, dtype=torch.float32),
        torch.tensor(structure, dtype=torch.float32),
        torch.from_numpy(np.stack(ssim_tiles)) if tiles else None,
        torch.from_numpy(np.stack(structure_tiles)) if tiles else None,
    )


def ssim_pairs(
    lqs: list[np.ndarray],
    hqs: list[np.ndarray],
    factors: list[int],
    scales: list[int],
    grids: list[int | None],
) -> list[tuple[float, float, np.ndarray | None, np.ndarray | None]]:
    """:func:`ssim_pair` over pairs of any sizes, in parallel threads (OpenCV releases the GIL).

    ``hqs[i]`` must be exactly ``scales[i]`` times ``lqs[i]``.
    """

    def one(i: int):
        return ssim_pair(lqs[i], hqs[i], factors[i], factors[i] * scales[i], grids[i])

    if len(lqs) == 1 or torch.get_num_threads() == 1:
        return [one(i) for i in range(len(lqs))]
    return list(_pool().map(one, range(len(lqs))))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """One pool per thread count: starting threads on every call costs more than a pair."""
    workers = torch.get_num_threads()
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="ggtqc-ssim")
    return _POOLS[workers]


def _image(image: torch.Tensor) -> np.ndarray:
    """A ``[3, H, W]`` uint8 or float32 tensor as an array without copying where its layout
    allows: ``(H, W, 3)`` for channels-last memory, ``(3, H, W)`` planes otherwise."""
    if image.is_floating_point() and image.dtype != torch.float32:
        image = image.float()  # float64, float16, bfloat16: one conversion, layout kept
    hwc = image.permute(1, 2, 0)
    if hwc.is_contiguous():
        return hwc.numpy()
    return image.contiguous().numpy()


def ssim_pair(
    lq: np.ndarray, hq: np.ndarray, lq_block: int, hq_block: int, grid: int | None = None
) -> tuple[float, float, np.ndarray | None, np.ndarray | None]:
    """SSIM and structure of one pair of ``(H, W, 3)`` images or ``(3, H, W)`` planes, each
    uint8 (0..255) or float (0..1)."""
    lq_height, lq_width = lq.shape[1:] if _planar(lq) else lq.shape[:2]
    height, width = lq_height // lq_block, lq_width // lq_block
    x = pooled_luma(lq, lq_block, height, width)
    y = pooled_luma(hq, hq_block, height, width)
    ssim, structure = ssim_maps(x, y)
    means = cv2.mean(ssim)[0], cv2.mean(structure)[0]  # accumulates in float64
    if grid is None:
        return *means, None, None
    return *means, tile_means(ssim, grid), tile_means(structure, grid)


def pooled_luma(image: np.ndarray, block: int, height: int, width: int) -> np.ndarray:
    """Luma of ``block x block`` means of an ``(H, W, 3)`` image or ``(3, H, W)`` planes,
    minus 128, float32.

    Centring on mid-grey leaves every covariance unchanged and keeps float32 moments of
    bright or dark planes from cancelling.
    """
    if image.dtype != np.uint8:
        return _float_luma(image, block, height, width)
    if _planar(image):
        return _planar_luma(image, block, height, width)
    sums = block_sums(image[: height * block, : width * block], block)
    matrix = np.asarray([[*LUMA, 0.0]], dtype=np.float64) / (block * block)
    matrix[0, 3] = -128.0
    return cv2.transform(sums.astype(np.float32, copy=False), matrix.astype(np.float32))


def _planar(image: np.ndarray) -> bool:
    """``(3, H, W)`` planes rather than an ``(H, W, 3)`` image (a 3-px-wide image is taken
    as interleaved, the layout the filters hand over)."""
    return image.shape[0] == 3 and image.shape[2] != 3


def _planar_luma(planes: np.ndarray, block: int, height: int, width: int) -> np.ndarray:
    """:func:`pooled_luma` of three ``(H, W)`` planes: each pooled exactly, then weighted."""
    weights = [np.float32(w / (block * block)) for w in LUMA]
    pooled = [block_sums(plane[: height * block, : width * block], block) for plane in planes]
    luma = cv2.addWeighted(pooled[0], float(weights[0]), pooled[1], float(weights[1]), -128.0, dtype=cv2.CV_32F)
    return cv2.scaleAdd(pooled[2].astype(np.float32, copy=False), float(weights[2]), luma)


def _float_luma(image: np.ndarray, block: int, height: int, width: int) -> np.ndarray:
    """:func:`pooled_luma` of a float (0..1) image or planes: luma or planes pooled in float32."""
    image = image.astype(np.float32, copy=False)
    if _planar(image):
        pooled = [block_means(plane[: height * block, : width * block], block) for plane in image]
        luma = cv2.addWeighted(pooled[0], 255 * LUMA[0], pooled[1], 255 * LUMA[1], -128.0, dtype=cv2.CV_32F)
        return cv2.scaleAdd(pooled[2], 255 * LUMA[2], luma)
    # cvtColor's float RGB -> grey weights are the definition's 0.299, 0.587, 0.114.
    grey = cv2.cvtColor(image[: height * block, : width * block], cv2.COLOR_RGB2GRAY)
    luma = block_means(grey, block)
    luma *= np.float32(255)
    luma -= np.float32(128)
    return luma


def block_means(plane: np.ndarray, block: int) -> np.ndarray:
    """Means over ``block x block`` blocks of a float32 plane whose sides are multiples of ``block``.

    2x halvings first: OpenCV's 2x area resize of one float channel is vectorised, its
    generic integer-factor path is not.
    """
    while block % 2 == 0:
        plane = cv2.resize(plane, (plane.shape[1] // 2, plane.shape[0] // 2), interpolation=cv2.INTER_AREA)
        block //= 2
    if block > 1:
        plane = cv2.resize(plane, (plane.shape[1] // block, plane.shape[0] // block), interpolation=cv2.INTER_AREA)
    return plane


def block_sums(image: np.ndarray, block: int) -> np.ndarray:
    """Exact sums over ``block x block`` blocks of a uint8 image (uint16, or float32)."""
    if block == 1:
        return image
    if block & (block - 1) == 0 and block <= 16:
        # Each halving by 2x area resize of 4*x yields exact 2x2 sums; 16*16*255 fits in uint16.
        sums = image
        while block > 1:
            sums = np.multiply(sums, 4, dtype=np.uint16)
            sums = cv2.resize(sums, (sums.shape[1] // 2, sums.shape[0] // 2), interpolation=cv2.INTER_AREA)
            block //= 2
        return sums
    small = (image.shape[1] // block, image.shape[0] // block)
    return cv2.resize(image.astype(np.float32), small, interpolation=cv2.INTER_AREA) * np.float32(block * block)


def ssim_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid-region SSIM and structure maps of two luma planes centred on 128, float32.

    Written for few passes over memory: with centred means ``mx``, ``my`` the luminance
    term's numerator is ``2 mx my + 256 (mx + my) + 2*128**2 + C1`` and its denominator
    that plus ``(mx - my)**2``; the contrast-structure numerator ``2 cov + C2`` is twice
    the structure numerator, since ``C2 = 2 C3``. The arithmetic runs on whole contiguous
    planes (faster than on views) and the window-wide border is cropped at the end.
    """

    def blur(plane):
        return cv2.sepFilter2D(plane, cv2.CV_32F, _TAPS, _TAPS, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    xx, yy, xy = blur(x * x), blur(y * y), blur(x * y)
    mxy = mx * my
    xy -= mxy  # covariance
    xx -= cv2.multiply(mx, mx)  # variances
    yy -= cv2.multiply(my, my)
    lum_num = cv2.add(mx, my)
    lum_num *= 256
    lum_num += mxy
    lum_num += mxy
    lum_num += np.float32(2 * 128**2 + C1)
    lum_den = cv2.subtract(mx, my)
    lum_den *= lum_den
    lum_den += lum_num
    structure_num = xy
    structure_num += np.float32(C3)  # the contrast-structure numerator is twice this
    cs_den = cv2.add(xx, yy)
    cs_den += np.float32(C2)
    ssim = cv2.multiply(lum_num, structure_num, scale=2.0)
    ssim /= lum_den
    ssim /= cs_den
    xx *= yy  # negative only through rounding of two near-zero variances
    np.maximum(xx, 0, out=xx)
    np.sqrt(xx, out=xx)
    xx += np.float32(C3)
    structure = cv2.divide(structure_num, xx)
    crop = (slice(RADIUS, -RADIUS), slice(RADIUS, -RADIUS))
    return ssim[crop], structure[crop]


def tile_means(maps: np.ndarray, grid: int) -> np.ndarray:
    rows, cols = tile_bounds(maps.shape[0], grid), tile_bounds(maps.shape[1], grid)
    sums = np.add.reduceat(np.add.reduceat(maps.astype(np.float64), rows[:-1], axis=0), cols[:-1], axis=1)
    counts = np.outer(np.diff(rows), np.diff(cols))
    return (sums / counts).astype(np.float32)
