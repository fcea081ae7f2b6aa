"""The fast CPU path of the downsampled SSIM, built on OpenCV's SIMD routines.

Exact area pooling without float conversion of the full-size image: OpenCV's 2x area
resize of a uint16 image returns the rounded mean of each 2x2 block, so pre-multiplying by
4 makes it return the exact block *sum*. Two such halvings give exact 4x4 sums, and so on;
other block sizes take the generic area resize in float32. Luma and the 1/block**2 scale
then apply to the small pooled planes. Pairs of a batch run in parallel threads (OpenCV
releases the GIL).
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

    def one(i: int):
        return ssim_pair(_hwc(lq[i]), _hwc(hq[i]), g.factor, g.factor * g.scale, g.grid)

    workers = max(1, min(torch.get_num_threads(), g.batch))
    if workers == 1:
        results = [one(i) for i in range(g.batch)]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, range(g.batch)))
    ssim, structure, ssim_tiles, structure_tiles = zip(*results)
    tiles = g.grid is not None
    return SSIMResult(
        torch.tensor(ssim, dtype=torch.float32),
        torch.tensor(structure, dtype=torch.float32),
        torch.from_numpy(np.stack(ssim_tiles)) if tiles else None,
        torch.from_numpy(np.stack(structure_tiles)) if tiles else None,
    )


def _hwc(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` uint8 tensor -> ``(H, W, 3)`` array; free for channels-last memory."""
    return image.permute(1, 2, 0).contiguous().numpy()


def ssim_pair(
    lq: np.ndarray, hq: np.ndarray, lq_block: int, hq_block: int, grid: int | None = None
) -> tuple[float, float, np.ndarray | None, np.ndarray | None]:
    """SSIM and structure of one pair of uint8 ``(H, W, 3)`` images."""
    height, width = lq.shape[0] // lq_block, lq.shape[1] // lq_block
    x = pooled_luma(lq, lq_block, height, width)
    y = pooled_luma(hq, hq_block, height, width)
    ssim, structure = ssim_maps(x, y)
    if grid is None:
        return float(ssim.mean(dtype=np.float64)), float(structure.mean(dtype=np.float64)), None, None
    return (
        float(ssim.mean(dtype=np.float64)),
        float(structure.mean(dtype=np.float64)),
        tile_means(ssim, grid),
        tile_means(structure, grid),
    )


def pooled_luma(image: np.ndarray, block: int, height: int, width: int) -> np.ndarray:
    """Luma of ``block x block`` means of an ``(H, W, 3)`` image, float32 ``(height, width)``."""
    sums = block_sums(image[: height * block, : width * block], block)
    matrix = np.asarray([LUMA], dtype=np.float32) / np.float32(block * block)
    return cv2.transform(sums.astype(np.float32, copy=False), matrix)


def block_sums(image: np.ndarray, block: int) -> np.ndarray:
    """Exact sums over ``block x block`` blocks of a uint8 image (uint16, or float32)."""
    if block == 1:
        return image
    if block & (block - 1) == 0 and block <= 16:
        # Each halving by 2x area resize of 4*x yields exact 2x2 sums; 16*16*255 fits in uint16.
        sums = image.astype(np.uint16)
        while block > 1:
            sums <<= 2
            sums = cv2.resize(sums, (sums.shape[1] // 2, sums.shape[0] // 2), interpolation=cv2.INTER_AREA)
            block //= 2
        return sums
    small = (image.shape[1] // block, image.shape[0] // block)
    return cv2.resize(image.astype(np.float32), small, interpolation=cv2.INTER_AREA) * np.float32(block * block)


def ssim_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid-region SSIM and structure maps, float32."""
    x = x - np.float32(128)  # same covariances, less cancellation in float32
    y = y - np.float32(128)
    crop = (slice(RADIUS, -RADIUS), slice(RADIUS, -RADIUS))

    def blur(plane):
        return cv2.sepFilter2D(plane, cv2.CV_32F, _TAPS, _TAPS, borderType=cv2.BORDER_REFLECT)[crop]

    mx, my = blur(x), blur(y)
    xx, yy, xy = blur(x * x), blur(y * y), blur(x * y)
    mxy = mx * my
    vx = xx - mx * mx
    vy = yy - my * my
    cov = xy - mxy
    mx += 128
    my += 128
    ssim = (2 * mx * my + C1) * (2 * cov + C2) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    structure = (cov + np.float32(C3)) / (np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0)) + np.float32(C3))
    return ssim.astype(np.float32, copy=False), structure.astype(np.float32, copy=False)


def tile_means(maps: np.ndarray, grid: int) -> np.ndarray:
    rows, cols = tile_bounds(maps.shape[0], grid), tile_bounds(maps.shape[1], grid)
    sums = np.add.reduceat(np.add.reduceat(maps.astype(np.float64), rows[:-1], axis=0), cols[:-1], axis=1)
    counts = np.outer(np.diff(rows), np.diff(cols))
    return (sums / counts).astype(np.float32)
