"""The ``artifacts`` filter's measures in torch, over a group of same-sized pairs.

Step for step the CPU path of ``ggtqc.plugins.artifacts`` (its module docstring says what
each field means), over ``[N, H, W]`` luma planes at the HQ's full resolution. Unlike the
small planes of ``color`` and ``hallucination``, these are up to 1024 px and more, so
Gaussian blurs and Sobel filters are separable ``conv2d`` passes over a plane padded by
OpenCV's border rule (gathered by index, so any kernel width is right), morphology is
``max_pool2d`` (OpenCV's dilate and erode leave the border out, as its padding of -inf
does), and resizing is a product with a ``[target, source]`` matrix of OpenCV's resize
coefficients (its coordinate rule, its cubic and Lanczos-4 formulas, its replicated border).

Everything is float64. Memory allows it: the plugin hands over at most ``CHUNK_PIXELS``
HQ pixels at a time (16 pairs at 1024 px; about 4.4 GiB at the peak, measured on CPU with
8 pairs of a 1024 px HQ and a 512 px LQ: 2.2 GiB), and float64 never runs in TF32. float32
would halve that, but new_detail's least-squares fit is ill-conditioned (its upscales
nearly collinear): with every plane float32 (``DTYPE``), ``change`` moved by up to 0.036
grey levels from the CPU path on ``examples/pairs`` and the planted calibration faults,
against 0.009 in float64, and ``clipped`` (a float32 mean over a megapixel) by 0.0018.

What is not reproduced bit for bit, and how far it moves the scores
(``tests/test_torch_parity.py`` gives the measured differences):

- the CPU path is float32 OpenCV; luma here is computed in float64 and rounded to float32,
  so the pixels at the clipping limits (2 and 253 grey levels) fall on the same side;
- ``cv2.resize`` of the uint8 LQ with INTER_LINEAR (``change``'s plain upscale) is OpenCV's
  fixed-point arithmetic of its SIMD loop; where OpenCV takes its scalar loop instead (a
  row's tail) it rounds differently, a level apart on about 0.1% of the pixels;
- ``cv2.remap`` (the ringing profiles) interpolates in float32 at positions from float32
  gradients; here the positions come from float64 gradients rounded to float32, and the
  interpolation is float64;
- percentiles over a selection are taken by sorting (NumPy's linear rule); a pixel that
  float rounding moves across a selection's threshold changes the selection by one.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ggtqc.kernels.planes import DTYPE, REFLECT, REFLECT_101, area_resize, border_index, gaussian_taps, on_device
from ggtqc.kernels.ssim import LUMA
from ggtqc.plugins import artifacts as cpu  # its constants; the plugin imports this module only when it runs it

CHUNK_PIXELS = 16 * 1024 * 1024  # HQ pixels scored at once: about 30 float64 planes of this size are alive


# --- planes: luma, filtering, morphology ------------------------------------------------


def as_float32(planes: torch.Tensor) -> torch.Tensor:
    """Float64 planes holding float32 values: a float32 OpenCV result, computed in float64 and stored."""
    return planes.float().to(planes.dtype)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """``ggtqc.planes.luma`` of uint8 ``[N, 3, H, W]``: float64 ``[N, H, W]`` holding float32 values
    (rounding to float32 keeps a grey of 2 or 253 on the same side of ``unclipped``'s limits)."""
    weights = on_device("luma", rgb.device, lambda: torch.tensor(LUMA, dtype=DTYPE))
    return torch.einsum("nchw,c->nhw", rgb.to(DTYPE), weights.to(DTYPE)).float().to(DTYPE)


@lru_cache(maxsize=256)
def _border(length: int, before: int, after: int, border: str) -> np.ndarray:
    return np.array([border_index(p, length, border) for p in range(-before, length + after)], np.int64)


def _pad(planes: torch.Tensor, dim: int, radius: int, border: str) -> torch.Tensor:
    length = planes.shape[dim]
    if border == REFLECT_101 and radius < length:  # torch's "reflect" is reflect-101, and faster than a gather
        return F.pad(planes, (radius, radius, 0, 0) if dim == 3 else (0, 0, radius, radius), mode="reflect")
    index = on_device(("border", length, radius, border), planes.device, lambda: torch.from_numpy(_border(length, radius, radius, border)))
    return planes.index_select(dim, index)


def separable(planes: torch.Tensor, taps_x, taps_y, border: str = REFLECT_101) -> torch.Tensor:
    """``cv2.sepFilter2D`` (correlation) of ``[N, H, W]`` planes with 1-D ``taps_x`` along rows and ``taps_y`` along columns."""
    out = planes[:, None]
    for taps, dim in ((taps_x, 3), (taps_y, 2)):
        taps = tuple(float(t) for t in taps)
        radius = len(taps) // 2
        shape = (1, 1, 1, len(taps)) if dim == 3 else (1, 1, len(taps), 1)
        kernel = on_device(("taps", taps, shape), planes.device, lambda taps=taps, shape=shape: torch.tensor(taps, dtype=DTYPE).view(shape))
        out = F.conv2d(_pad(out, dim, radius, border), kernel.to(out.dtype))
    return out[:, 0]


def gaussian_blur(planes: torch.Tensor, sigma: float, border: str = REFLECT_101) -> torch.Tensor:
    """``cv2.GaussianBlur(plane, (0, 0), sigma)`` of a float plane: ``round(8 sigma + 1) | 1`` taps."""
    taps = gaussian_taps(sigma)
    return separable(planes, taps, taps, border)


def sobel(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cv2.Sobel(plane, CV_32F, 1, 0)`` and ``(0, 1)``: 3 taps, border reflect-101."""
    return separable(planes, (-1, 0, 1), (1, 2, 1)), separable(planes, (1, 2, 1), (-1, 0, 1))


def dilate(planes: torch.Tensor, width: int) -> torch.Tensor:
    """``cv2.dilate`` with a ``width`` x ``width`` square; the border is left out, as OpenCV's default.
    A square's maximum is a row's maximum of column maxima: two passes of ``width``, not ``width**2``."""
    half = width // 2
    rows = F.max_pool2d(planes[:, None], (1, width), stride=1, padding=(0, half))
    return F.max_pool2d(rows, (width, 1), stride=1, padding=(half, 0))[:, 0]


def erode(planes: torch.Tensor, width: int) -> torch.Tensor:
    return -dilate(-planes, width)


# --- percentiles (NumPy's linear rule, its lerp as NumPy writes it) ----------------------


def _lerp(low: torch.Tensor, high: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    return torch.where(fraction < 0.5, low + (high - low) * fraction, high - (high - low) * (1 - fraction))


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """``np.percentile(row, q)`` of each row of ``[N, M]`` (torch.quantile refuses large inputs)."""
    m = values.shape[1]
    position = q / 100 * (m - 1)
    below = int(position)
    above = min(below + 1, m - 1)
    # two order statistics per row: the k-th smallest values, without sorting the rows
    low = values.kthvalue(below + 1, dim=1).values
    high = values.kthvalue(above + 1, dim=1).values
    return _lerp(low, high, torch.tensor(position - below, dtype=values.dtype, device=values.device))


def masked_percentile(values: torch.Tensor, mask: torch.Tensor, q: float) -> torch.Tensor:
    """``np.percentile(row[mask_row], q)`` of each row of ``[N, ...]``: ``[N]``, NaN where a row selects nothing."""
    n = values.shape[0]
    flat, keep = values.reshape(n, -1), mask.reshape(n, -1)
    row = torch.arange(n, device=values.device)[:, None].expand_as(keep)[keep]
    chosen = flat[keep]
    # sorted by value within each row: sort the values, then stably by row
    chosen, order = chosen.sort()
    row = row[order]
    row, order = row.sort(stable=True)
    chosen = chosen[order]
    counts = torch.bincount(row, minlength=n)
    starts = counts.cumsum(0) - counts
    position = q / 100 * (counts - 1).clamp(min=0).to(values.dtype)
    below = position.floor().long()
    above = torch.minimum(below + 1, (counts - 1).clamp(min=0))
    last = max(chosen.numel() - 1, 0)
    if chosen.numel() == 0:
        return torch.full((n,), math.nan, dtype=values.dtype, device=values.device)
    low, high = chosen[(starts + below).clamp(max=last)], chosen[(starts + above).clamp(max=last)]
    out = _lerp(low, high, position - below)
    return torch.where(counts > 0, out, torch.full_like(out, math.nan))


# --- resizing ------------------------------------------------------------------------------


def _cubic(x: float) -> list[float]:
    a = -0.75  # OpenCV's interpolateCubic
    c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + 1
    c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    return [c0, c1, c2, 1 - c0 - c1 - c2]


def _lanczos4(x: float) -> list[float]:
    """OpenCV's interpolateLanczos4: eight taps, normalised to sum 1 in float32."""
    if x < np.finfo(np.float32).eps:
        return [0, 0, 0, 1, 0, 0, 0, 0]
    s45 = 0.70710678118654752440084436210485
    cs = ((1, 0), (-s45, -s45), (0, 1), (s45, -s45), (-1, 0), (s45, s45), (0, -1), (-s45, s45))
    y0 = -(x + 3) * math.pi * 0.25
    s0, c0 = math.sin(y0), math.cos(y0)
    coeffs = []
    total = np.float32(0)
    for i in range(8):
        y = -(x + 3 - i) * math.pi * 0.25
        coeffs.append(np.float32((cs[i][0] * s0 + cs[i][1] * c0) / (y * y)))
        total = np.float32(total + coeffs[-1])
    inverse = np.float32(1) / total
    return [float(np.float32(c * inverse)) for c in coeffs]


@lru_cache(maxsize=64)
def _resize_matrix(source: int, target: int, kind: str) -> np.ndarray:
    """``[target, source]`` weights of ``cv2.resize`` along one axis (resizeGeneric's coordinate
    rule: ``fx = (dx + 0.5) * scale - 0.5`` in float32, clamped to the plane for linear only;
    source indices past the border replicated)."""
    scale = 1.0 / (target / source)
    taps = {"linear": 2, "cubic": 4, "lanczos4": 8}[kind]
    half = taps // 2
    matrix = np.zeros((target, source))
    for dx in range(target):
        fx = float(np.float32((dx + 0.5) * scale - 0.5))
        sx = math.floor(fx)
        fx = float(np.float32(fx - sx))
        if kind == "linear":
            if sx < 0:
                fx, sx = 0.0, 0
            if sx >= source - 1:
                fx, sx = 0.0, source - 1
            weights = [1 - fx, fx]
        else:
            weights = _cubic(fx) if kind == "cubic" else _lanczos4(fx)
        for k, weight in enumerate(weights):
            matrix[dx, min(max(sx - half + 1 + k, 0), source - 1)] += float(np.float32(weight))
    return matrix


def resize_matrix(source: int, target: int, kind: str, device: torch.device) -> torch.Tensor:
    return on_device(("resize", source, target, kind), device, lambda: torch.from_numpy(_resize_matrix(source, target, kind)))


@lru_cache(maxsize=64)
def _linear_u8_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """``[target, 2]`` source indices and fixed-point weights (11 bits, INTER_RESIZE_COEF_BITS)
    of ``cv2.resize`` INTER_LINEAR of a uint8 image along one axis."""
    matrix_index, weights = np.zeros((target, 2), np.int64), np.zeros((target, 2), np.int64)
    scale = 1.0 / (target / source)
    for dx in range(target):
        fx = float(np.float32((dx + 0.5) * scale - 0.5))
        sx = math.floor(fx)
        fx = float(np.float32(fx - sx))
        if sx < 0:
            fx, sx = 0.0, 0
        if sx >= source - 1:
            fx, sx = 0.0, source - 1
        matrix_index[dx] = sx, min(sx + 1, source - 1)
        weights[dx] = np.rint((1 - fx) * 2048), np.rint(fx * 2048)
    return matrix_index, weights


def linear_resize_u8(images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``cv2.resize(image, shape[::-1], interpolation=INTER_LINEAR)`` of uint8 ``[N, C, h, w]``,
    in OpenCV's integer arithmetic: rows weighted in 11-bit fixed point, then columns the way
    its SIMD loop does, ``((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16) + 2 >> 2`` (its
    scalar tail rounds once instead: a level apart on about 0.1% of pixels)."""
    h, w = images.shape[-2:]
    tables = {}
    for axis, (source, target) in (("x", (w, shape[1])), ("y", (h, shape[0]))):
        tables[axis] = [on_device(("linear-u8", source, target, k), images.device, lambda k=k, s=source, t=target: torch.from_numpy(_linear_u8_taps(s, t)[k]))
                        for k in (0, 1)]  # fmt: skip
    (ix, wx), (iy, wy) = tables["x"], tables["y"]
    wide = images.long()
    rows = wide.index_select(3, ix[:, 0]) * wx[:, 0] + wide.index_select(3, ix[:, 1]) * wx[:, 1]
    top, bottom = rows.index_select(2, iy[:, 0]), rows.index_select(2, iy[:, 1])
    out = (((top >> 4) * wy[:, 0, None]) >> 16) + (((bottom >> 4) * wy[:, 1, None]) >> 16)
    return ((out + 2) >> 2).clamp(0, 255).to(torch.uint8)


def resize(planes: torch.Tensor, shape: tuple[int, int], kind: str, rows: slice = slice(None), cols: slice = slice(None)) -> torch.Tensor:
    """``cv2.resize(plane, shape[::-1], interpolation=...)`` of float ``[..., H, W]`` planes, or
    only its ``rows`` and ``cols`` (a strided sample costs that much less)."""
    h, w = planes.shape[-2:]
    left = resize_matrix(h, shape[0], kind, planes.device)[rows].to(planes.dtype)
    right = resize_matrix(w, shape[1], kind, planes.device)[cols].to(planes.dtype)
    return left @ planes @ right.T


# --- the measures ---------------------------------------------------------------------


def grid_ratio(steps: tuple[torch.Tensor, torch.Tensor], period: int, phase: int | None = None) -> torch.Tensor:
    """``cpu.grid_ratio`` of ``[N, L]`` mean steps per axis: ``[N]``."""
    ratios = []
    for axis_steps in steps:
        n, length = axis_steps.shape
        usable = length // period * period
        if usable < 2 * period:
            return torch.full((n,), math.nan, dtype=DTYPE, device=axis_steps.device)
        periods = axis_steps[:, :usable].reshape(n, -1, period).sort(dim=1).values
        kept = max(2, round(periods.shape[1] * (1 - cpu.GRID_TRIM)))
        phases = periods[:, :kept].mean(dim=1)
        step = phases.amax(dim=1) if phase is None else phases[:, phase]
        mean = phases.mean(dim=1)
        ratios.append(1 + (step - mean) / mean.clamp(min=cpu.GRID_FLOOR))
    return (ratios[0] + ratios[1]) / 2


def blockiness(y: torch.Tensor, scale: int) -> torch.Tensor:
    steps = ((y[:, 1:] - y[:, :-1]).abs().mean(dim=2), (y[:, :, 1:] - y[:, :, :-1]).abs().mean(dim=1))
    own = grid_ratio(steps, 8)
    if scale < 2:
        return own
    return torch.fmax(own, grid_ratio(steps, 8 * scale, phase=8 * scale - 1))  # np.nanmax of the two


def flat_noise_sigma(y: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    gradient = magnitude[:, 1:-1, 1:-1]
    flat = gradient <= percentile(gradient.flatten(1), 30)[:, None, None]
    laplacian = on_device("laplacian", y.device, lambda: torch.tensor([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=DTYPE)[None, None])
    response = F.conv2d(y[:, None], laplacian)[:, 0].abs()  # the interior, as the CPU path keeps
    return masked_percentile(response, flat, 50) / 0.6745 / 6


def rim_share(y: torch.Tensor) -> torch.Tensor:
    smooth = gaussian_blur(y, 3.0)
    gx, gy = sobel(smooth)
    gradient = torch.sqrt(gx * gx + gy * gy)
    strong = (gradient >= percentile(gradient.flatten(1), 95)[:, None, None]).to(DTYPE)
    near = dilate(strong, 5) > 0
    high, low = dilate(smooth, cpu.HALO_WINDOW), erode(smooth, cpu.HALO_WINDOW)
    span = (high - low).clamp(min=8.0)
    overshoots = ((y - high).clamp(min=0) + (low - y).clamp(min=0)) / span > cpu.HALO_OVERSHOOT
    bright = smooth > (high + low) / 2
    room = (torch.where(bright, 255.0 - high, low) > cpu.HALO_OVERSHOOT * span) & near
    counted = (overshoots & room).sum(dim=(1, 2)).to(DTYPE)
    return counted / torch.maximum(room.sum(dim=(1, 2)).to(DTYPE), 0.5 * near.sum(dim=(1, 2)).to(DTYPE))


def _reflect(index: torch.Tensor, length: int) -> torch.Tensor:
    """cv2.BORDER_REFLECT ("fedcba|abcdef") for indices at most a plane outside it."""
    index = torch.where(index < 0, -index - 1, index)
    index = torch.where(index >= length, 2 * length - 1 - index, index)
    return index.clamp(0, length - 1)


def ringing_strength(y: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    n, h, w = y.shape
    edges = (magnitude >= percentile(magnitude.flatten(1), 95)[:, None, None]) & (magnitude >= dilate(magnitude, 3)) & (magnitude > 0)
    count = edges.sum(dim=(1, 2))
    pair, ys, xs = edges.nonzero(as_tuple=True)
    # as the CPU path: gradients in float32, the normal's offset in float32, the map in float32
    m32 = magnitude[pair, ys, xs].float()
    nx, ny = gx[pair, ys, xs].float() / m32, gy[pair, ys, xs].float() / m32
    flat = y.reshape(n, -1)

    def along(distance: float) -> torch.Tensor:
        # cv2.remap, INTER_LINEAR, border reflect: OpenCV 5 interpolates float maps at their
        # exact position (OpenCV 4 rounded it to 1/32 px)
        samples = []
        for base, offset in ((xs, nx), (ys, ny)):
            position = (base.to(DTYPE) + (distance * offset).to(DTYPE)).float().to(DTYPE)
            start = position.floor()
            samples.append((start.long(), position - start))
        (x0, fx), (y0, fy) = samples
        total = torch.zeros_like(fx)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                index = _reflect(y0 + dy, h) * w + _reflect(x0 + dx, w)
                total = total + flat[pair, index] * (wy * wx)
        return total

    bright, dark = along(cpu.HALO_PLATEAU), along(-cpu.HALO_PLATEAU)
    peak = torch.stack([along(d) for d in cpu.HALO_NEAR]).amax(dim=0)
    trough = torch.stack([along(-d) for d in cpu.HALO_NEAR]).amin(dim=0)
    step = bright - dark
    room = (step > 16) & (bright < 245) & (dark > 10)
    ringing = torch.minimum((peak - bright).clamp(min=0), (dark - trough).clamp(min=0)) / step
    strength = torch.full((n,), math.nan, dtype=DTYPE, device=y.device)
    rooms = torch.bincount(pair[room], minlength=n)
    enough = (count >= 10) & (rooms.to(DTYPE) >= torch.clamp(cpu.HALO_MIN_ROOM * count.to(DTYPE), min=10))
    if room.any():
        # one row per pair: the edge pixels with room, the others left out of the mask
        values = torch.zeros((n, h * w), dtype=DTYPE, device=y.device)
        chosen = torch.zeros((n, h * w), dtype=torch.bool, device=y.device)
        values[pair[room], (ys * w + xs)[room]] = ringing[room]
        chosen[pair[room], (ys * w + xs)[room]] = True
        strength = torch.where(enough, masked_percentile(values, chosen, 60), strength)
    return strength


def halo(rim: torch.Tensor, ringing: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(ringing), rim / cpu.HALO_RIM, torch.minimum(rim / cpu.HALO_RIM, ringing / cpu.HALO_RINGING))


def detail(y: torch.Tensor) -> torch.Tensor:
    blur1, blur2 = gaussian_blur(y, 1.0), gaussian_blur(y, 2.0)
    fine = ((y - blur1) ** 2).mean(dim=(1, 2))
    next_band = ((blur1 - blur2) ** 2).mean(dim=(1, 2))
    return torch.sqrt(fine / next_band.clamp(min=1e-6))


def unclipped(y: torch.Tensor) -> torch.Tensor:
    return (y > 2) & (y < 253)


def clipped_share(inside: torch.Tensor) -> torch.Tensor:
    return 1 - inside.to(DTYPE).mean(dim=(1, 2))


def luma_range(y: torch.Tensor) -> torch.Tensor:
    sample = y[:, ::2, ::2].flatten(1)
    return percentile(sample, 99) - percentile(sample, 1)


def rms_change(y_lq: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cpu.rms_change``: uint8 ``images`` area-resized to the LQ's size (``area_resize``), the
    difference blurred with border reflect; its RMS, and its band above ``DETAIL_BLUR``'s."""
    down = luma(area_resize(images, (y_lq.shape[2], y_lq.shape[1])).round().to(torch.uint8))
    difference = gaussian_blur(down - y_lq, cpu.CHANGE_BLUR, REFLECT)
    return torch.sqrt((difference * difference).mean(dim=(1, 2))), band_rms(difference, cpu.DETAIL_BLUR)


def band_rms(planes: torch.Tensor, sigma: float) -> torch.Tensor:
    """``cpu.band_rms``: RMS of each plane less its Gaussian blur of ``sigma`` (border reflect-101)."""
    band = planes - gaussian_blur(planes, sigma)
    return torch.sqrt((band * band).mean(dim=(1, 2)))


def change(lq: torch.Tensor, hq: torch.Tensor, y_lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cpu.change``: both readings of :func:`rms_change` beyond a bilinear upscale's, in quadrature."""
    measured = rms_change(y_lq, hq)
    if hq.shape[2] <= lq.shape[2] and hq.shape[3] <= lq.shape[3]:
        return measured
    resampling = rms_change(y_lq, linear_resize_u8(lq, tuple(hq.shape[2:])))
    return tuple(torch.sqrt((m**2 - r**2).clamp(min=0)) for m, r in zip(measured, resampling))


def least_squares(basis: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``cpu.least_squares`` per pair (``basis`` ``[N, T, S]``, ``target`` ``[N, S]``): the scaled
    normal equations solved as ``np.linalg.lstsq`` does, through the SVD, cut at ``eps * T``."""
    gram, moment = basis @ basis.transpose(1, 2), (basis @ target[:, :, None])[:, :, 0]
    norms = torch.sqrt(torch.diagonal(gram, dim1=1, dim2=2))
    norms = torch.where(norms == 0, torch.ones_like(norms), norms)
    u, s, vh = torch.linalg.svd(gram / (norms[:, :, None] * norms[:, None, :]))
    cut = torch.finfo(DTYPE).eps * gram.shape[1] * s[:, :1]
    inverse = torch.where(s > cut, 1 / s, torch.zeros_like(s))
    solution = (vh.transpose(1, 2) @ (inverse * (u.transpose(1, 2) @ (moment / norms)[:, :, None])[:, :, 0])[:, :, None])[:, :, 0]
    return solution / norms


def new_detail(y_lq: torch.Tensor, y: torch.Tensor, scale: int, inside: torch.Tensor) -> torch.Tensor:
    """``cpu.new_detail``; bicubic, bilinear and Lanczos-4 upscales as matrix products, each term
    upscaled only at the fitted samples, the fitted model upscaled once (resizing is linear)."""
    n = y.shape[0]
    zero = torch.zeros(n, dtype=DTYPE, device=y.device)
    if scale < 2:
        return zero
    usable = erode(inside.to(DTYPE), 3) > 0
    step = cpu.FIT_STEP
    fit = usable[:, ::step, ::step].to(DTYPE)
    terms = [y_lq, *(y_lq - gaussian_blur(y_lq, k) for k in cpu.SHARPEN_RADII)]
    enough = fit.sum(dim=(1, 2)) >= (len(terms) + 2 + 1) * 10
    shape = tuple(y.shape[1:])
    sampled = [resize(t, shape, "cubic", slice(None, None, step), slice(None, None, step)) for t in terms]
    sampled += [resize(y_lq, shape, kind, slice(None, None, step), slice(None, None, step)) for kind in ("linear", "lanczos4")]
    sampled += [torch.ones_like(fit), y[:, ::step, ::step]]
    rows = (torch.stack(sampled, dim=1) * fit[:, None]).flatten(2)
    coef = least_squares(rows[:, :-1], rows[:, -1])
    # the CPU path weighs the bicubic terms with float32 coefficients
    weights = coef[:, : len(terms)].float().to(DTYPE)
    combined = sum(weights[:, k, None, None] * t for k, t in enumerate(terms))
    model = resize(combined, shape, "cubic")
    model = model + coef[:, -3, None, None] * resize(y_lq, shape, "linear") + coef[:, -2, None, None] * resize(y_lq, shape, "lanczos4")
    residual = y - (model + coef[:, -1, None, None])
    high = residual - gaussian_blur(residual, cpu.NYQUIST_BLUR * scale)
    energy = (high * high * usable).sum(dim=(1, 2)) / usable.sum(dim=(1, 2))
    return torch.where(enough, torch.sqrt(energy), zero)


def measure(lq: torch.Tensor, hq: torch.Tensor, scale: int) -> dict[str, torch.Tensor]:
    """The fields of uint8 ``[N, 3, h, w]`` LQs and ``[N, 3, H, W]`` HQs of one size, ``[N]``
    each, but ``change``: its parts ``overall``, ``in_detail_band`` and ``drawn``, which the
    plugin reads as the CPU path does (``cpu.change_reading``); and ``rim`` and ``ringing``
    for the unsure note (``cpu.unsure_note``)."""
    y, y_lq = luma(hq), luma(lq)
    # Each step rounded to float32, as OpenCV stores it: a blocky target has plateaus whose
    # gradients tie exactly in float32, and the edges' local maxima must tie alike.
    smooth = as_float32(gaussian_blur(y, 1.5))
    gx, gy = (as_float32(g) for g in sobel(smooth))
    magnitude = as_float32(torch.sqrt(gx * gx + gy * gy))
    rim, ringing = rim_share(y), ringing_strength(y, gx, gy, magnitude)
    inside = unclipped(y)
    overall, in_detail_band = change(lq, hq, y_lq)
    return {
        "blockiness": blockiness(y, scale),
        "noise": flat_noise_sigma(y, magnitude),
        "halo": halo(rim, ringing),
        "detail": detail(y),
        "clipped": clipped_share(inside) - clipped_share(unclipped(y_lq)),
        "tonal_range": luma_range(y),
        "lq_detail": band_rms(y_lq, cpu.DETAIL_BLUR),
        "overall": overall,
        "in_detail_band": in_detail_band,
        "drawn": new_detail(y_lq, y, scale, inside),
        "rim": rim,
        "ringing": ringing,
    }
