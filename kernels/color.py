"""The ``color`` filter's measures in torch, over a group of same-sized pairs.

Step for step the CPU path of ``ggtqc.plugins.color`` (``compare`` and the functions it
calls; their docstrings say what each measure means), written over ``[N, ...]`` batches so
a group of pairs costs a few dozen kernel launches on a GPU. Branches of the CPU path
(not measured, a cast removed) are computed for every pair and chosen per pair at the end.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ggtqc.kernels.planes import (
    DTYPE, REFLECT, REFLECT_101, gaussian_blur, interp, luma, noise_sigma, on_device, percentile, small_views,
)  # fmt: skip
from ggtqc.plugins import color as cpu  # its constants; the plugin imports this module only when it runs it

# cv2.cvtColor(COLOR_RGB2LAB) of float images reads CIELAB off a 33^3 table of int16 nodes
# (L* in 1/16384 of 100, a* b* in 1/16384 of 256) by fixed-point trilinear interpolation,
# so its output steps by 1/64 a* unit. The exact formula differs from it by up to 0.3
# units, which moves the hue and cast scores; so the table is rebuilt here, node for node
# (float32 arithmetic, as OpenCV's softfloat), and read the same way.
RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
WHITE_D65 = (0.950456, 1.0, 1.088754)
LAB_BASE_SHIFT, LAB_LUT_SHIFT, TRILINEAR_SHIFT = 14, 5, 4
LAB_BASE, LAB_LUT_DIM, TRILINEAR_BASE = 1 << LAB_BASE_SHIFT, (1 << LAB_LUT_SHIFT) + 1, 1 << TRILINEAR_SHIFT


@lru_cache(maxsize=1)
def _lab_nodes() -> np.ndarray:
    """``[33, 33, 33, 3]`` int32 nodes (L, a, b) indexed by (red, green, blue) grid steps."""
    f32 = np.float32
    steps = np.arange(LAB_LUT_DIM, dtype=f32) / f32(LAB_LUT_DIM - 1)
    d = steps.astype(np.float64)
    linear = np.where(d <= 809 / 20000, d / (323 / 25), ((d + 11 / 200) / (1 + 11 / 200)) ** (12 / 5)).astype(f32)
    r, g, b = np.meshgrid(linear, linear, linear, indexing="ij")
    coeffs = (np.asarray(RGB_TO_XYZ) / np.asarray(WHITE_D65)[:, None]).astype(f32)
    # OpenCV adds blue first: (B*c2 + G*c1) + R*c0, each rounded to float32
    x, y, z = ((b * row[2] + g * row[1]) + r * row[0] for row in coeffs)
    threshold, slope, bias = f32(216) / f32(24389), f32(841) / f32(108), f32(16) / f32(116)

    def f(t):
        fused = (t.astype(np.float64) * np.float64(slope) + np.float64(bias)).astype(f32)  # mulAdd: one rounding
        return np.where(t > threshold, np.cbrt(t), fused).astype(f32)

    fx, fy, fz = f(x), f(y), f(z)
    lightness = np.where(y > threshold, f32(116) * fy - f32(16), (f32(24389) / f32(27)) * y).astype(f32)
    a, bb = (f32(500) * (fx - fy)).astype(f32), (f32(200) * (fy - fz)).astype(f32)
    base = f32(LAB_BASE)
    nodes = [np.rint(base * lightness / f32(100)), np.rint(base * (a + f32(128)) / f32(256)), np.rint(base * (bb + f32(128)) / f32(256))]
    return np.stack(nodes, axis=-1).astype(np.int32)


CORNERS = torch.tensor([[dr, dg, db] for dr in (0, 1) for dg in (0, 1) for db in (0, 1)])  # a cell's 8 corners


def lab(rgb: torch.Tensor) -> torch.Tensor:
    """CIELAB ``[N, 3, H, W]`` (L*, a*, b*) of RGB 0..255, as ``cv2.cvtColor((rgb / 255).astype(float32), COLOR_RGB2LAB)``."""
    device = rgb.device
    nodes = on_device("lab-nodes", device, lambda: torch.from_numpy(_lab_nodes()).view(-1, 3))
    corners = on_device("lab-corners", device, lambda: CORNERS)
    fixed = torch.round((rgb.float() / 255).clamp(0, 1) * LAB_BASE).to(torch.int64).movedim(1, -1)  # rounded half to even
    cell = fixed >> (LAB_BASE_SHIFT - LAB_LUT_SHIFT)  # [..., 3]
    frac = (fixed >> (LAB_BASE_SHIFT - 8 - 1)) & (TRILINEAR_BASE - 1)
    # All 8 corners at once: [..., 8, 3] node coordinates and [..., 8] integer weights.
    corner = (cell[..., None, :] + corners).clamp(max=LAB_LUT_DIM - 1)
    index = (corner[..., 0] * LAB_LUT_DIM + corner[..., 1]) * LAB_LUT_DIM + corner[..., 2]
    weight = torch.where(corners.bool(), frac[..., None, :], TRILINEAR_BASE - frac[..., None, :]).prod(dim=-1)
    total = (nodes[index] * weight[..., None]).sum(dim=-2)  # [..., 3]
    shift = 3 * TRILINEAR_SHIFT
    fixed_lab = ((total + (1 << (shift - 1))) >> shift).movedim(-1, 1).float()
    scale = torch.tensor([100 / LAB_BASE, 256 / LAB_BASE, 256 / LAB_BASE], dtype=torch.float32, device=device)
    offset = torch.tensor([0.0, -128.0, -128.0], dtype=torch.float32, device=device)
    return (fixed_lab * scale[:, None, None] + offset[:, None, None]).to(DTYPE)


def exposure_matched(lq: torch.Tensor, y_lq: torch.Tensor, y_hq: torch.Tensor) -> torch.Tensor:
    """LQ with its luma mapped onto the HQ's distribution, RGB scaled together per pixel."""
    n = lq.shape[0]
    order = torch.argsort(y_lq.flatten(1), dim=1, stable=True)
    target = torch.empty_like(y_lq.flatten(1)).scatter_(1, order, torch.sort(y_hq.flatten(1), dim=1).values)
    gain = target.view_as(y_lq) / y_lq.clamp(min=1.0)
    return (lq * gain[:, None]).clamp(0, 255).view(n, 3, *y_lq.shape[1:])


def tone_matched(lq: torch.Tensor, y_lq: torch.Tensor, y_hq: torch.Tensor, curve_points: int) -> torch.Tensor:
    """LQ with the luma quantile curve LQ -> HQ applied to each of R, G and B."""
    quantiles = torch.linspace(0, 100, curve_points, dtype=DTYPE, device=lq.device)
    source = percentile(y_lq.flatten(1), quantiles)
    target = percentile(y_hq.flatten(1), quantiles)
    steps = torch.arange(curve_points, dtype=DTYPE, device=lq.device) * 1e-4
    source = torch.cummax(source + steps, dim=1).values  # strictly rising for interp
    return interp(lq.flatten(1), source, target).clamp(0, 255).view_as(lq)


def free_chroma(lab_planes: torch.Tensor, levels: int) -> torch.Tensor:
    """RMS a*b* after subtracting the mean a*b* of each luma quantile bin: ``[N]``."""
    lightness = lab_planes[:, 0].flatten(1)
    ab = lab_planes[:, 1:].flatten(2).transpose(1, 2)  # [N, M, 2]
    n, m = lightness.shape
    rank = torch.argsort(torch.argsort(lightness, dim=1, stable=True), dim=1, stable=True)
    bins = torch.clamp(rank * levels // m, max=levels - 1)
    sums = torch.zeros(n, levels, 2, dtype=ab.dtype, device=ab.device).scatter_add_(1, bins[..., None].expand(-1, -1, 2), ab)
    counts = torch.zeros(n, levels, dtype=ab.dtype, device=ab.device).scatter_add_(1, bins, torch.ones_like(lightness))
    means = sums / counts.clamp(min=1)[..., None]
    residual = ab - means.gather(1, bins[..., None].expand(-1, -1, 2))
    return (residual**2).sum(dim=2).mean(dim=1).sqrt()


def chroma_noise(lab_planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise sigmas of the a* and b* planes: two ``[N]``."""
    return noise_sigma(lab_planes[:, 1]), noise_sigma(lab_planes[:, 2])


def hypot(ab: torch.Tensor) -> torch.Tensor:
    return torch.hypot(ab[..., 0], ab[..., 1])


def weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per row, the value where the cumulative weight (values rising) first reaches half."""
    ordered, order = torch.sort(values, dim=1, stable=True)
    cumulative = torch.cumsum(weights.gather(1, order), dim=1)
    index = torch.searchsorted(cumulative, cumulative[:, -1:] / 2).clamp(max=values.shape[1] - 1)
    return ordered.gather(1, index)[:, 0]


def saturation_and_offset(ab_lq: torch.Tensor, ab_hq: torch.Tensor, reliable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares chroma scale LQ -> HQ ``[N]`` and the mean a*b* it leaves ``[N, 2]``."""
    r = reliable[..., None]
    scale = ((r * ab_lq * ab_hq).sum(dim=(1, 2)) / (r * ab_lq**2).sum(dim=(1, 2)).clamp(min=1e-9)).clamp(min=0)
    offset = (r * (ab_hq - scale[:, None, None] * ab_lq)).sum(dim=1) / r.sum(dim=1)
    return scale, offset


def above_noise(chroma: torch.Tensor, noise: torch.Tensor, floor: float) -> torch.Tensor:
    return (chroma - floor * noise[:, None]).clamp(min=0)


def global_colour(ab_lq, ab_hq, reliable, noise, floor: float, min_colour: float) -> dict[str, torch.Tensor]:
    """``hue_shift_deg``, ``cast`` and ``saturation``, each ``[N]``."""
    chroma_lq, chroma_hq = hypot(ab_lq), hypot(ab_hq)
    weight = above_noise(torch.minimum(chroma_lq, chroma_hq), noise, floor) * reliable
    (al, bl), (ah, bh) = ab_lq.unbind(2), ab_hq.unbind(2)
    turn = torch.atan2(bh * al - ah * bl, ah * al + bh * bl)  # the angle of hq * conj(lq)
    hue = torch.rad2deg(weighted_median(turn, weight)).abs()
    hue = torch.where(weight.sum(dim=1) > 0, hue, math.nan)
    _, offset = saturation_and_offset(ab_lq, ab_hq, reliable)
    lit_colour = above_noise(chroma_lq, noise, floor) * reliable
    kept = ((lit_colour * chroma_hq**2).sum(dim=1) / (lit_colour * chroma_lq**2).sum(dim=1)).sqrt()
    saturation = torch.where(lit_colour.mean(dim=1) < min_colour, math.nan, kept)
    return {"hue_shift_deg": hue, "cast": hypot(offset), "saturation": saturation}


def weighted_lstsq(design: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``np.linalg.lstsq(design, target, rcond=None)[0]`` per pair, for few columns.

    Through the small normal matrix's eigenvalues (singular values squared), with NumPy's
    cutoff, so a rank-deficient fit takes the minimum-norm solution as NumPy's does and a
    batch costs one small batched ``eigh`` on a GPU.
    """
    gram = design.transpose(1, 2) @ design
    values, vectors = torch.linalg.eigh(gram)
    singular = values.clamp(min=0).sqrt()
    cutoff = torch.finfo(design.dtype).eps * max(design.shape[1:]) * singular[:, -1:]
    inverse = torch.where(singular > cutoff, 1 / values, 0.0)
    return vectors @ (inverse[..., None] * (vectors.transpose(1, 2) @ (design.transpose(1, 2) @ target)))


def local_change(ab_lq, ab_hq, reliable, shape, noise, region_share: float, min_lit: float, floor: float) -> torch.Tensor:
    """The worst region's a*b* residual after the best global affine map of a*b*: ``[N]``."""
    n, h, w = reliable.shape[0], *shape
    design = torch.cat([ab_lq, torch.ones_like(ab_lq[..., :1])], dim=2)
    weight = reliable[..., None]
    coef = weighted_lstsq(design * weight, ab_hq * weight)
    residual = hypot(ab_hq - design @ coef)
    sigma = region_share * max(h, w)
    lit = gaussian_blur(reliable.view(n, h, w), sigma, REFLECT_101)
    region = gaussian_blur((residual * reliable).view(n, h, w), sigma, REFLECT_101) / lit.clamp(min=1e-3)
    judged = lit >= min_lit
    worst = torch.where(judged, region, -math.inf).flatten(1).max(dim=1).values
    return torch.where(judged.flatten(1).any(dim=1), (worst - floor * noise).clamp(min=0), math.nan)


def veil_lifted(lq: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
    """``[N]``: the fall of the dark channel where every channel's darker quarter fell, else 0 (``cpu.veil_lifted``)."""

    def eroded(planes: torch.Tensor) -> torch.Tensor:
        return -F.max_pool2d(-planes, 3, stride=1, padding=1)  # cv2.erode, 3x3: the border left out

    def dark(images: torch.Tensor) -> torch.Tensor:
        return torch.quantile(eroded(images.min(dim=1, keepdim=True).values).flatten(1), 0.5, dim=1)  # np.median

    def quarters(images: torch.Tensor) -> torch.Tensor:
        return torch.quantile(eroded(images).flatten(2), 0.25, dim=2)  # np.percentile(..., 25), linear

    every_channel_fell = (quarters(lq) > quarters(hq)).all(dim=1)
    return torch.where(every_channel_fell, dark(lq) - dark(hq), 0.0)


def neutral_source(ab_lq, ab_hq, reliable, noise, greys_tell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LQ colour made neutral ``[N, 2]``, and ``[N]`` whether it is judged as a cast removed;
    ``greys_tell`` ``[N]`` is False under a lifted veil."""
    scale, offset = saturation_and_offset(ab_lq, ab_hq, reliable)
    white = -offset / scale[:, None]
    size = hypot(white)
    radius = torch.maximum(cpu.NOISE_FLOOR * noise, (size / 2).clamp(max=cpu.MAX_GREY_RADIUS))
    near_white = (reliable * (hypot(ab_lq - white[:, None]) < radius[:, None])).sum(dim=1)
    near_grey = (reliable * (hypot(ab_lq) < radius[:, None])).sum(dim=1)
    cast_added = greys_tell & (near_grey > 2 * near_white) & (near_grey > 0.02 * reliable.sum(dim=1))
    return white, (scale >= cpu.MIN_SCALE) & (size >= cpu.MIN_REMOVED) & ~cast_added


def contrast_kept(y_lq: torch.Tensor, y_hq: torch.Tensor, share: float, min_contrast: float) -> torch.Tensor:
    sigma = share * max(y_lq.shape[1:])
    source, target = (gaussian_blur(y, sigma, REFLECT).flatten(1).std(dim=1, correction=0) for y in (y_lq, y_hq))
    return torch.where(source >= min_contrast, target / source, math.nan)


def compare(lq: torch.Tensor, hq: torch.Tensor, size: tuple[int, int], free_floor: float) -> dict[str, torch.Tensor]:
    """Every field of ``color`` for a group, ``[N]`` each, plus ``unsure`` (bool ``[N]``) and
    the measured ``hue`` and ``cast`` and the ``veil_lifted`` the unsure note quotes."""
    small_lq, small_hq = small_views(lq, hq, size)
    y_lq, y_hq = luma(small_lq), luma(small_hq)
    contrast = contrast_kept(y_lq, y_hq, cpu.CONTRAST_SCALE, cpu.MIN_CONTRAST)
    scaled = lab(exposure_matched(small_lq, y_lq, y_hq))
    noise_a, noise_b = chroma_noise(scaled)
    free = (free_chroma(scaled, cpu.LEVELS) ** 2 - noise_a**2 - noise_b**2).clamp(min=0).sqrt()
    clean = (free >= cpu.MIN_FREE_CHROMA) & (free >= cpu.CLEAN_CHROMA_SNR * torch.maximum(noise_a, noise_b))
    measured = (free >= free_floor) | clean

    matched = lab(tone_matched(small_lq, y_lq, y_hq, cpu.CURVE_POINTS))
    ab_lq = matched[:, 1:].flatten(2).transpose(1, 2)
    ab_hq = lab(small_hq)[:, 1:].flatten(2).transpose(1, 2)
    noise = torch.maximum(*chroma_noise(matched))
    reliable = ((y_lq.flatten(1) / 60.0).clamp(0, 1)) ** 2
    as_measured = global_colour(ab_lq, ab_hq, reliable, noise, cpu.NOISE_FLOOR, cpu.MIN_COLOUR)
    local = local_change(ab_lq, ab_hq, reliable, size[::-1], noise, cpu.LOCAL_REGION, cpu.LOCAL_MIN_LIT, cpu.NOISE_FLOOR)
    lifted = veil_lifted(small_lq, small_hq)
    white, removed_cast = neutral_source(ab_lq, ab_hq, reliable, noise, lifted < cpu.VEIL_LIFT)
    shift = torch.where(removed_cast[:, None], white, 0.0)
    corrected = global_colour(ab_lq - shift[:, None], ab_hq, reliable, noise, cpu.NOISE_FLOOR, cpu.MIN_COLOUR)

    nan = torch.full_like(free, math.nan)
    out = {name: torch.where(measured, torch.where(removed_cast, corrected[name], as_measured[name]), nan)
           for name in as_measured}  # fmt: skip
    out.update(
        lq_free_chroma=free,
        contrast=contrast,
        local=torch.where(measured, local, nan),
        cast_removed=torch.where(measured, torch.where(removed_cast, hypot(white), 0.0), nan),
        unsure=measured & removed_cast & ((as_measured["hue_shift_deg"] >= cpu.HUE_REVIEW) | (as_measured["cast"] >= cpu.CAST_REVIEW)),
        measured_hue=as_measured["hue_shift_deg"],
        measured_cast=as_measured["cast"],
        veil_lifted=lifted,
    )
    return out
