"""Downsampled SSIM between LQ/HQ pairs: the definition, its torch reference, and dispatch.

Definition, for ``lq`` ``[B, 3, h, w]`` and ``hq`` ``[B, 3, s*h, s*w]``, each either uint8
(0..255) or floating point on the 0..1 scale (torchvision's convention; it is taken as the
uint8 scale divided by 255, so a batch and ``batch / 255`` score the same):

1. Area pooling: LQ is averaged over ``factor x factor`` blocks and HQ over
   ``s*factor`` blocks, so both become ``(h // factor) x (w // factor)`` planes (rows and
   columns that do not fill a whole block are left out).
2. Luma ``Y = 0.299 R + 0.587 G + 0.114 B``, full range, not rounded.
3. SSIM with an 11-tap Gaussian window (sigma 1.5), population covariance,
   ``C1 = (0.01 * 255)**2``, ``C2 = (0.03 * 255)**2``, averaged over the valid region
   (5 px cropped on each side). This equals ``skimage.metrics.structural_similarity(Y_lq,
   Y_hq, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``.

Besides SSIM, the same moments give the *structure* term
``(cov + C3) / (sigma_x * sigma_y + C3)`` with ``C3 = C2 / 2``: the part of SSIM that a
change of brightness or contrast does not move (restoring a low-light or hazy photo changes
both legitimately). Either can also be averaged per tile of a ``grid x grid`` partition
of the valid region; tile ``i`` spans rows ``ceil(i*H/grid)`` to ``ceil((i+1)*H/grid)``.

Implementations: ``triton`` (CUDA tensors, or any tensor under ``TRITON_INTERPRET=1``),
``opencv`` (CPU tensors; the fast CPU path) and ``torch`` (any device, any float dtype;
in float64 it is the reference the others are tested against). ``auto`` picks Triton for
CUDA tensors and OpenCV for CPU tensors. ``GGTQC_SSIM_IMPL`` overrides the choice; an
implementation asked for explicitly raises if it cannot run, while ``auto`` falls back to
torch (with one warning) if the Triton kernel fails on this machine.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
RADIUS = WINDOW // 2
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
C3 = C2 / 2
LUMA = (0.299, 0.587, 0.114)
IMPLEMENTATIONS = ("triton", "opencv", "torch")
IMPL_VARIABLE = "GGTQC_SSIM_IMPL"
_TRITON_BROKEN: list[str] = []  # why triton failed here, once it has: auto stops choosing it


def gaussian_window() -> list[float]:
    """The 11 normalised taps (scipy's gaussian_filter weights for sigma 1.5, truncate 3.5)."""
    taps = [math.exp(-((i - RADIUS) ** 2) / (2 * SIGMA**2)) for i in range(WINDOW)]
    total = sum(taps)
    return [t / total for t in taps]


@dataclass
class SSIMResult:
    """Per-pair means (``[B]`` float32), and per-tile means (``[B, grid, grid]``) if asked."""

    ssim: torch.Tensor
    structure: torch.Tensor
    ssim_tiles: torch.Tensor | None = None
    structure_tiles: torch.Tensor | None = None


@dataclass(frozen=True)
class Geometry:
    """Shapes of one call, checked once for every implementation."""

    batch: int
    scale: int
    factor: int
    height: int
    """Pooled plane height; the valid SSIM map is ``height - 10`` rows."""
    width: int
    grid: int | None

    @property
    def valid(self) -> tuple[int, int]:
        return self.height - 2 * RADIUS, self.width - 2 * RADIUS


def check_inputs(lq: torch.Tensor, hq: torch.Tensor, factor: int, grid: int | None) -> Geometry:
    for name, t in (("lq", lq), ("hq", hq)):
        if not (t.dtype == torch.uint8 or t.is_floating_point()) or t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(
                f"{name} must be a uint8 or floating-point (0..1) [B, 3, H, W] tensor, got {t.dtype} {list(t.shape)}"
            )
    if lq.shape[0] != hq.shape[0]:
        raise ValueError(f"lq and hq hold different batch sizes ({lq.shape[0]} and {hq.shape[0]})")
    if lq.device != hq.device:
        raise ValueError(f"lq is on {lq.device} and hq on {hq.device}")
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    (h, w), (H, W) = lq.shape[2:], hq.shape[2:]
    scale = H // h
    if scale < 1 or H != scale * h or W != scale * w:
        raise ValueError(f"hq {H}x{W} is not an integer multiple of lq {h}x{w}; resize it first")
    geometry = Geometry(lq.shape[0], scale, factor, h // factor, w // factor, grid)
    vh, vw = geometry.valid
    if vh < 1 or vw < 1:
        raise ValueError(
            f"lq {h}x{w} pooled by {factor} gives {h // factor}x{w // factor}, smaller than the {WINDOW}-px window"
        )
    if grid is not None and not 1 <= grid <= min(vh, vw):
        raise ValueError(f"grid must be between 1 and {min(vh, vw)} for a {vh}x{vw} SSIM map, got {grid}")
    return geometry


def tile_bounds(length: int, parts: int) -> list[int]:
    """``parts + 1`` boundaries ``ceil(i * length / parts)`` splitting ``range(length)``."""
    return [(i * length + parts - 1) // parts for i in range(parts + 1)]


def downsampled_ssim(lq: torch.Tensor, hq: torch.Tensor, factor: int, impl: str | None = None) -> torch.Tensor:
    """Per-pair mean SSIM of the pooled luma planes, float32 ``[B]``."""
    return downsampled_ssim_terms(lq, hq, factor, impl=impl).ssim


def downsampled_ssim_terms(
    lq: torch.Tensor, hq: torch.Tensor, factor: int, grid: int | None = None, impl: str | None = None
) -> SSIMResult:
    """SSIM and structure, per pair and (with ``grid``) per tile."""
    geometry = check_inputs(lq, hq, factor, grid)
    name = _choose(impl, lq.device)
    if name == "triton":
        from ggtqc.kernels.ssim_triton import ssim_triton

        automatic = (impl or os.environ.get(IMPL_VARIABLE, "auto")) == "auto"
        try:
            # The kernel pools whatever it loads in float32: floats go in on the uint8 scale.
            return ssim_triton(on_uint8_scale(lq), on_uint8_scale(hq), geometry)
        except Exception as error:  # compiler or driver trouble on this machine
            if not automatic:
                raise
            _TRITON_BROKEN.append(f"{type(error).__name__}: {error}")
            warnings.warn(f"triton SSIM failed ({_TRITON_BROKEN[0][:200]}); using the torch implementation", stacklevel=2)
            return ssim_torch(lq, hq, geometry)
    if name == "opencv":
        from ggtqc.kernels.ssim_opencv import ssim_opencv

        return ssim_opencv(lq, hq, geometry)
    return ssim_torch(lq, hq, geometry)


def _choose(impl: str | None, device: torch.device) -> str:
    asked = impl or os.environ.get(IMPL_VARIABLE, "auto")
    if asked not in (*IMPLEMENTATIONS, "auto"):
        raise ValueError(f"unknown SSIM implementation {asked!r}; choose auto, {', '.join(IMPLEMENTATIONS)}")
    if asked == "auto":
        if device.type == "cuda":
            return "triton" if triton_available() and not _TRITON_BROKEN else "torch"
        return "opencv" if device.type == "cpu" else "torch"
    if asked == "triton" and not (triton_available() and (device.type == "cuda" or _interpreting())):
        raise RuntimeError("the triton SSIM needs CUDA tensors and triton installed (or TRITON_INTERPRET=1 for tests)")
    if asked == "opencv" and device.type != "cpu":
        raise RuntimeError(f"the opencv SSIM runs on CPU tensors, not {device}")
    return asked


def on_uint8_scale(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as they are; floating-point (0..1) ones times 255, in float32."""
    return images if images.dtype == torch.uint8 else images.float() * 255


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


# --- torch reference -------------------------------------------------------------------


def pooled_luma(images: torch.Tensor, block: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``[B, 3, H, W]`` uint8 (or 0..1 float) -> ``[B, height, width]`` luma of ``block x block``
    means, on the uint8 scale."""
    b = images.shape[0]
    x = images[:, :, : height * block, : width * block].to(dtype)
    if images.is_floating_point():
        x = x * 255
    x = x.reshape(b, 3, height, block, width, block).mean(dim=(3, 5))
    weights = torch.tensor(LUMA, dtype=dtype, device=images.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1)


def ssim_torch(lq: torch.Tensor, hq: torch.Tensor, geometry: Geometry, dtype: torch.dtype = torch.float32) -> SSIMResult:
    g = geometry
    x = pooled_luma(lq, g.factor, g.height, g.width, dtype)
    y = pooled_luma(hq, g.factor * g.scale, g.height, g.width, dtype)
    ssim_map, structure_map = ssim_maps(x, y)
    return SSIMResult(
        ssim_map.mean(dim=(1, 2)).float(),
        structure_map.mean(dim=(1, 2)).float(),
        tile_means(ssim_map, g.grid),
        tile_means(structure_map, g.grid),
    )


def ssim_maps(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid-region SSIM and structure maps of two ``[B, H, W]`` luma planes."""
    taps = torch.tensor(gaussian_window(), dtype=x.dtype, device=x.device)
    # Moments of planes shifted by mid-grey: the same covariances, less cancellation in float32.
    x, y = x - 128, y - 128
    stack = torch.stack([x, y, x * x, y * y, x * y], dim=1).flatten(0, 1)[:, None]
    stack = F.conv2d(stack, taps.view(1, 1, WINDOW, 1))
    stack = F.conv2d(stack, taps.view(1, 1, 1, WINDOW))
    mx, my, xx, yy, xy = stack.view(x.shape[0], 5, *stack.shape[2:]).unbind(1)
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    mx, my = mx + 128, my + 128
    ssim = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    structure = (cov + C3) / (torch.sqrt(vx.clamp(min=0) * vy.clamp(min=0)) + C3)
    return ssim, structure


def tile_means(maps: torch.Tensor, grid: int | None) -> torch.Tensor | None:
    if grid is None:
        return None
    rows, cols = tile_bounds(maps.shape[1], grid), tile_bounds(maps.shape[2], grid)
    out = torch.empty(maps.shape[0], grid, grid, dtype=maps.dtype, device=maps.device)
    for i in range(grid):
        for j in range(grid):
            out[:, i, j] = maps[:, rows[i] : rows[i + 1], cols[j] : cols[j + 1]].mean(dim=(1, 2))
    return out.float()
