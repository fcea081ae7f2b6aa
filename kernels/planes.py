"""``ggtqc.planes`` in torch: the small views and plane operations the weights-free filters
share, over batches ``[N, ...]`` on any device.

Each function mirrors an OpenCV or NumPy call of the CPU path and says which; where OpenCV
has a border rule or a kernel size rule, it is reproduced, so the two paths agree to
float rounding (``tests/test_torch_parity.py`` states how far). Filtering of the small
planes (at most a few hundred px) is done as two matrix products with a matrix that holds
the taps and the border: exact for any kernel size (OpenCV reflects again when a kernel is
wider than the plane), and one batched call on a GPU. The planes are float64: they are
small, float64 products never run in TF32, and rounding stays far below the tolerances.

Which path runs: ``GGTQC_FILTER_IMPL`` (``auto``, the default: torch where the run's
device is CUDA, NumPy/OpenCV on CPU; ``torch`` forces these functions on any device, the
way the parity tests run them on CPU; ``numpy`` forces the CPU path on any device).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ggtqc.kernels.ssim import LUMA

if TYPE_CHECKING:
    from ggtqc.batch import Batch

IMPL_VARIABLE = "GGTQC_FILTER_IMPL"
IMPLEMENTATIONS = ("auto", "torch", "numpy")
REFLECT, REFLECT_101 = "reflect", "reflect_101"  # cv2.BORDER_REFLECT ("fedcba|abcdef") and BORDER_DEFAULT ("fedcb|abcdef")
DTYPE = torch.float64


def use_torch(device: torch.device) -> bool:
    """Whether a weights-free filter takes its torch path on ``device`` (see the module doc)."""
    asked = os.environ.get(IMPL_VARIABLE, "auto")
    if asked not in IMPLEMENTATIONS:
        raise ValueError(f"{IMPL_VARIABLE}={asked!r}: choose one of {', '.join(IMPLEMENTATIONS)}")
    return asked == "torch" or (asked == "auto" and device.type == "cuda")


class TorchPath:
    """Mixin of a weights-free filter that also has a batched torch path: it keeps the run's
    device from ``setup``, and :meth:`on_torch` says whether ``score`` should take that path."""

    gpu = "optional"
    device = torch.device("cpu")

    def setup(self, device: torch.device) -> None:
        self.device = device

    def on_torch(self) -> bool:
        return use_torch(self.device)

    def score_on_cpu(self, i: int, batch: Batch, columns: dict[str, list[float]], unsure: list[str | None] | None = None) -> None:
        """Pair ``i`` of ``batch`` by the CPU path (``score_pair``), into the torch path's
        ``columns`` and, where the filter is unsure, ``unsure``: for the pairs that path leaves out."""
        from ggtqc.filters import PairScores

        result = self.score_pair(batch.lq[i], batch.hq[i])
        if isinstance(result, PairScores):
            result, note = result.values, result.unsure
            if unsure is not None:
                unsure[i] = note
        for name, value in result.items():
            columns[name][i] = value


_ON_DEVICE: OrderedDict[tuple, torch.Tensor] = OrderedDict()
KEPT_ON_DEVICE = 1024  # constants kept, the least recently used dropped: a dataset of many sizes needs many


def on_device(key, device: torch.device, make) -> torch.Tensor:
    """A constant tensor (a filter matrix, a table) made once by ``make()`` and kept on each
    device: copying it again for every call would cost a transfer, and a wait, each time."""
    kept = _ON_DEVICE.get((key, device))
    if kept is None:
        kept = _ON_DEVICE[(key, device)] = make().to(device)
        while len(_ON_DEVICE) > KEPT_ON_DEVICE:
            _ON_DEVICE.popitem(last=False)
    else:
        _ON_DEVICE.move_to_end((key, device))
    return kept


def size_groups(lq: Sequence[np.ndarray], hq: Sequence[np.ndarray]) -> dict[tuple, list[int]]:
    """Pair indices grouped by (LQ shape, HQ shape).

    Pairs of one group stack into one tensor with no padding. Grouping, not padding with
    masks, because the measures take sorts, quantiles and medians over whole frames, which
    masks would make ragged; a dataset holds few distinct sizes, so groups are large.
    """
    groups: dict[tuple, list[int]] = {}
    for i, (a, b) in enumerate(zip(lq, hq)):
        groups.setdefault((a.shape, b.shape), []).append(i)
    return groups


def upload(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """RGB uint8 ``(H, W, 3)`` arrays of one shape -> a uint8 ``[N, 3, H, W]`` tensor on ``device``."""
    if device.type != "cuda":
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    # Stacked straight into page-locked memory: one host copy, and the transfer can overlap
    # the work already queued on the device.
    staging = torch.empty((len(images), *images[0].shape), dtype=torch.uint8, pin_memory=True)
    np.stack(images, out=staging.numpy())
    return staging.to(device, non_blocking=True).permute(0, 3, 1, 2)


def uploaded(batch: Batch, indices: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The LQ and HQ of ``indices`` (one size group) on ``device``, uint8 ``[n, 3, H, W]``.

    Each pair is uploaded once per batch and kept in ``batch.cache``, so the filters that
    run after the first (and a subset's) reuse it instead of copying the images again.
    """
    keys = [f"torch-upload:{batch.ids[i]}" for i in indices]
    missing = [k for k, key in enumerate(keys) if key not in batch.cache]
    if missing:
        lq = upload([batch.lq[indices[k]] for k in missing], device)
        hq = upload([batch.hq[indices[k]] for k in missing], device)
        for j, k in enumerate(missing):
            batch.cache[keys[k]] = (lq[j], hq[j])
        if len(missing) == len(keys):
            return lq, hq
    pairs = [batch.cache[key] for key in keys]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


# --- area resizing (cv2.resize INTER_AREA, uint8 in and out) ----------------------------


@lru_cache(maxsize=64)
def _area_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_AREA coefficients (computeResizeAreaTab) as ``[target, taps]`` source
    indices and float32 weights, in OpenCV's order (rising source index; unused taps weigh 0)."""
    scale = source / target
    rows: list[list[tuple[int, float]]] = []
    for dx in range(target):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, source - fsx1)
        sx1, sx2 = math.ceil(fsx1), math.floor(fsx2)
        sx2 = min(sx2, source - 1)
        sx1 = min(sx1, sx2)
        row = []
        if sx1 - fsx1 > 1e-3:
            row.append((sx1 - 1, (sx1 - fsx1) / cell))
        row += [(sx, 1 / cell) for sx in range(sx1, sx2)]
        if fsx2 - sx2 > 1e-3:
            row.append((sx2, min(min(fsx2 - sx2, 1.0), cell) / cell))
        rows.append(row)
    taps = max(len(row) for row in rows)
    index = np.zeros((target, taps), np.int64)
    weight = np.zeros((target, taps), np.float32)
    for dx, row in enumerate(rows):
        for k, (sx, w) in enumerate(row):
            index[dx, k], weight[dx, k] = sx, w
    return index, weight


def _area_pass(images: torch.Tensor, dim: int, target: int) -> torch.Tensor:
    """Area-weighted sums along ``dim`` in float32, tap by tap as OpenCV adds them (a
    matrix product would do, but may run in TF32 on a GPU and move values by whole levels)."""
    source = images.shape[dim]
    index = on_device(("area-index", source, target), images.device, lambda: torch.from_numpy(_area_taps(source, target)[0]))
    weight = on_device(("area-weight", source, target), images.device, lambda: torch.from_numpy(_area_taps(source, target)[1]))
    shape = [1] * images.dim()
    shape[dim] = target
    total = torch.zeros((), device=images.device)
    for k in range(index.shape[1]):
        taken = images.index_select(dim, index[:, k]).float()
        total = total + taken * weight[:, k].view(shape)
    return total


def area_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``cv2.resize(image, size, interpolation=INTER_AREA)`` of uint8 ``[N, C, H, W]`` images,
    shrinking to ``size`` = (width, height); float64 holding the uint8 values OpenCV gives."""
    width, height = size
    h, w = images.shape[2:]
    if h % height == 0 and w % width == 0:
        # Whole blocks: OpenCV sums integers; halving rounds half up (its SIMD path), other
        # factors multiply by 1/area in float32 and round half to even.
        fy, fx = h // height, w // width
        sums = images.reshape(*images.shape[:2], height, fy, width, fx).sum(dim=(3, 5), dtype=torch.int64)
        if fy == fx == 2:
            return ((sums + 2) >> 2).to(DTYPE)
        return torch.round(sums.float() * torch.tensor(1 / (fy * fx), dtype=torch.float32)).to(DTYPE)
    rows = _area_pass(images, 3, width)
    return torch.round(_area_pass(rows, 2, height)).clamp(0, 255).to(DTYPE)


def small_views(lq: torch.Tensor, hq: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`ggtqc.planes.small_pair` of a stacked group: both images area-resized to ``size``."""
    return area_resize(lq, size), area_resize(hq, size)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` -> ``[N, H, W]`` full-range luma (``ggtqc.planes.luma``)."""
    weights = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("nchw,c->nhw", rgb, weights)


# --- filtering -------------------------------------------------------------------------


def border_index(p: int, length: int, border: str) -> int:
    """OpenCV's borderInterpolate for the reflecting borders, reflecting as often as needed."""
    delta = 1 if border == REFLECT_101 else 0
    if length == 1:
        return 0
    while not 0 <= p < length:
        p = -p - 1 + delta if p < 0 else length - 1 - (p - length) - delta
    return p


def gaussian_taps(sigma: float) -> np.ndarray:
    """cv2.getGaussianKernel for a float image and ``ksize=(0, 0)``: ``round(8 sigma + 1) | 1`` taps."""
    size = int(np.rint(sigma * 4 * 2 + 1)) | 1  # cvRound rounds half to even, as rint
    x = np.arange(size) - (size - 1) / 2
    taps = np.exp(-0.5 / (sigma * sigma) * x * x)
    return taps / taps.sum()


@lru_cache(maxsize=256)
def _filter_matrix(length: int, taps: tuple[float, ...], border: str) -> np.ndarray:
    radius = len(taps) // 2
    matrix = np.zeros((length, length))
    for i in range(length):
        for k, tap in enumerate(taps):
            matrix[i, border_index(i + k - radius, length, border)] += tap
    return matrix


def blur_matrix(length: int, sigma: float, border: str, device: torch.device) -> torch.Tensor:
    """The ``length x length`` matrix of a Gaussian blur along one axis, border included."""
    return on_device(("blur", length, sigma, border), device,
                     lambda: torch.from_numpy(_filter_matrix(length, tuple(gaussian_taps(sigma)), border)))  # fmt: skip


def gaussian_blur(planes: torch.Tensor, sigma: float, border: str = REFLECT) -> torch.Tensor:
    """``cv2.GaussianBlur(plane, (0, 0), sigma, borderType=...)`` of float64 ``[N, H, W]`` planes."""
    h, w = planes.shape[-2:]
    return blur_matrix(h, sigma, border, planes.device) @ planes @ blur_matrix(w, sigma, border, planes.device).T


LAPLACIAN = torch.tensor([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=DTYPE)


def noise_sigma(planes: torch.Tensor) -> torch.Tensor:
    """``ggtqc.planes.noise_sigma`` of ``[N, H, W]`` planes (no mask): ``[N]``."""
    kernel = on_device("laplacian", planes.device, lambda: LAPLACIAN[None, None])
    response = F.conv2d(planes[:, None], kernel)[:, 0].abs()  # the interior only, as the CPU path keeps
    return percentile(response.flatten(1), 50) / 0.6745 / 6


def percentile(values: torch.Tensor, q: float | torch.Tensor) -> torch.Tensor:
    """``np.percentile(row, q)`` (linear) of each row of ``[N, M]``: ``[N]``, or ``[N, Q]`` for a tensor of q."""
    if isinstance(q, torch.Tensor):
        return torch.quantile(values, (q / 100).to(values.dtype), dim=1).T
    return torch.quantile(values, q / 100, dim=1)


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp`` per row: ``x`` ``[N, M]``, rising ``xp`` and ``fp`` ``[N, K]``."""
    k = xp.shape[1]
    xp, fp = xp.contiguous(), fp.contiguous()
    right = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, k - 1)
    left = right - 1
    x0, x1 = xp.gather(1, left), xp.gather(1, right)
    f0, f1 = fp.gather(1, left), fp.gather(1, right)
    inside = f0 + (x - x0) / (x1 - x0) * (f1 - f0)
    below, above = x < xp[:, :1], x >= xp[:, -1:]
    return torch.where(below, fp[:, :1], torch.where(above, fp[:, -1:], inside))


def linear_resize(planes: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``cv2.resize(plane, shape[::-1], interpolation=INTER_LINEAR)`` of ``[N, H, W]`` planes."""
    if tuple(planes.shape[-2:]) == tuple(shape):
        return planes
    return F.interpolate(planes[:, None], size=shape, mode="bilinear", align_corners=False)[:, 0]


def grey_opening(planes: torch.Tensor, width: int) -> torch.Tensor:
    """``cv2.morphologyEx(plane, MORPH_OPEN, np.ones((width, width)))``: erode then dilate,
    the border left out of both (OpenCV's default border for morphology)."""
    pad = width // 2
    eroded = -F.max_pool2d(-planes[:, None], width, stride=1, padding=pad)
    return F.max_pool2d(eroded, width, stride=1, padding=pad)[:, 0]
