"""The ``geometry`` filter's estimate in torch, over a group of same-sized pairs.

Step for step the CPU path of ``ggtqc.plugins.geometry`` (its module docstring says what
is measured and why), over ``[N, H, W]`` float64 planes at the analysis size:

- ``structure_only``: luma minus its box-blurred mean (``cv2.blur``, ``BORDER_REFLECT``), as
  one matrix product per axis;
- ``phase_shift``: ``cv2.phaseCorrelate`` with OpenCV's Hanning window: the planes padded to
  OpenCV's optimal DFT size, the normalised cross-power spectrum, its inverse, the
  quadrant swap, the peak and the weighted centroid of the 5x5 box around it;
- ``ecc``: ``cv2.findTransformECC`` (Evangelidis and Psarakis, 2008) with a 3x3 Gaussian
  pre-blur, ``MOTION_EUCLIDEAN`` or ``MOTION_AFFINE``: each iteration warps the image and
  its gradients back (bilinear, zero outside; the valid-pixel mask by nearest sample), takes
  zero-mean versions over the mask, and makes the Gauss-Newton step of the correlation with
  OpenCV's illumination factor lambda. All pairs of a group iterate together; a pair stops
  where OpenCV's would (the correlation moved by under ``eps``, or the count is reached),
  and a pair that OpenCV would abandon (``lambda_d <= 0`` or a NaN correlation: its
  ``cv2.error``) is marked failed, for the caller's fallback;
- ``estimate``: the CPU path's branches (the affine gain, the restart from no move, the
  mirror's second stage), and which pairs decide one of them, or an ECC abandonment, or a
  blank frame, by so little that float rounding could turn it: those are left to the CPU
  path (12 of the parity test's 302 pairs).

OpenCV computes the images in float32 and these functions in float64, so the iterations
drift apart by float rounding; ``tests/test_torch_parity.py`` states how far the fields do.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch

from ggtqc.kernels.planes import DTYPE, REFLECT, REFLECT_101, _filter_matrix, luma, on_device, small_views
from ggtqc.plugins import geometry as cpu  # its constants; the plugin imports this module only when it runs it

EUCLIDEAN, AFFINE = cv2.MOTION_EUCLIDEAN, cv2.MOTION_AFFINE
ITERATIONS, EPS = cpu.ECC_CRITERIA[1], cpu.ECC_CRITERIA[2]
ECC_BLUR = (0.25, 0.5, 0.25)  # cv2.GaussianBlur's 3x3 kernel for sigma 0 (its fixed small-kernel table)
GRADIENT = (-0.5, 0.0, 0.5)  # the ECC gradient (cv2.filter2D, a correlation)


def _axis_filter(planes: torch.Tensor, taps: tuple[float, ...], border: str) -> torch.Tensor:
    """``taps`` along both axes of ``[N, H, W]`` (a separable filter), border included."""
    return _along(_along(planes, taps, border, -2), taps, border, -1)


def _along(planes: torch.Tensor, taps: tuple[float, ...], border: str, dim: int) -> torch.Tensor:
    """``taps`` along one axis (``-1``: x, ``-2``: y) of ``[N, H, W]``."""
    length = planes.shape[dim]
    matrix = on_device(("geometry-filter", length, taps, border), planes.device,
                       lambda: torch.from_numpy(_filter_matrix(length, taps, border)))  # fmt: skip
    return planes @ matrix.T if dim == -1 else matrix @ planes


def structure_only(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cpu.structure_only`` of ``[N, H, W]`` luma: the unit-variance detail, and ``[N]`` its
    spread before scaling (under ``MIN_STRUCTURE`` the CPU path's None: a blank frame)."""
    window = max(3, round(0.12 * max(planes.shape[1:])))
    detail = planes - _axis_filter(planes, (1 / window,) * window, REFLECT)
    spread = detail.flatten(1).std(dim=1, unbiased=False)
    return detail / spread.clamp(min=1e-12)[:, None, None], spread


# --- phase correlation ---------------------------------------------------------------


def phase_shift(template: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
    """``cv2.phaseCorrelate(template, moving, hanning)`` of ``[N, H, W]`` pairs: ``[N, 2]`` (dx, dy)."""
    n, h, w = template.shape
    rows, cols = cv2.getOptimalDFTSize(h), cv2.getOptimalDFTSize(w)
    window = on_device(("hanning", h, w), template.device,
                       lambda: torch.from_numpy(cv2.createHanningWindow((w, h), cv2.CV_32F).astype(np.float64)))  # fmt: skip
    padded = torch.zeros((2, n, rows, cols), dtype=DTYPE, device=template.device)
    padded[0, :, :h, :w] = template * window
    padded[1, :, :h, :w] = moving * window
    spectra = torch.fft.rfft2(padded)
    power = spectra[0] * spectra[1].conj()
    magnitude = power.abs()
    # divSpectrums: P |P| / (|P|^2 + FLT_EPSILON)
    unit = power * magnitude / (magnitude * magnitude + np.finfo(np.float32).eps)
    surface = torch.fft.irfft2(unit, s=(rows, cols)) * (rows * cols)  # OpenCV's inverse is unscaled
    surface = torch.fft.fftshift(surface, dim=(-2, -1))  # OpenCV's fftShift: for an odd size too (225, 243: fast DFT sizes)
    peak = surface.flatten(1).argmax(dim=1)
    py, px = peak // cols, peak % cols
    # The 5x5 box around the peak, clipped to the surface: a weighted centroid.
    offsets = torch.arange(-2, 3, device=template.device)
    ys, xs = py[:, None] + offsets, px[:, None] + offsets  # [N, 5]
    inside_y, inside_x = (ys >= 0) & (ys < rows), (xs >= 0) & (xs < cols)
    box = surface[torch.arange(n, device=template.device)[:, None, None], ys.clamp(0, rows - 1)[:, :, None], xs.clamp(0, cols - 1)[:, None, :]]
    box = box * (inside_y[:, :, None] & inside_x[:, None, :])
    total = box.sum(dim=(1, 2)) + np.finfo(np.float64).eps
    cy = (box * ys[:, :, None]).sum(dim=(1, 2)) / total
    cx = (box * xs[:, None, :]).sum(dim=(1, 2)) / total
    return torch.stack([cols / 2 - cx, rows / 2 - cy], dim=1)


# --- warping -------------------------------------------------------------------------


def _grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ys = on_device(("grid-y", h, w), device, lambda: torch.arange(h, dtype=DTYPE)[:, None].expand(h, w).contiguous())
    xs = on_device(("grid-x", h, w), device, lambda: torch.arange(w, dtype=DTYPE)[None, :].expand(h, w).contiguous())
    return xs, ys


def _sources(warps: torch.Tensor, h: int, w: int, nearest: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each target pixel samples the image under ``warps`` ``[N, 2, 3]`` (WARP_INVERSE_MAP).

    OpenCV 4 rounds these positions to 1/32 px (``INTER_TAB_SIZE``) for bilinear sampling
    and to whole pixels for nearest, in fixed point with 10 fractional bits; OpenCV 5 samples
    at the float positions. Both are reproduced, as the installed OpenCV does it
    (:func:`warp_uses_table`): a 1/32 px difference in where ECC samples moves its fit by
    hundredths of a pixel, past the parity tolerances.
    """
    xs, ys = _grid(h, w, warps.device)
    m = warps[:, :, :, None, None]
    if not warp_uses_table():
        return m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2], m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    scale = float(1 << AB_BITS)
    bits, rounding = (AB_BITS, scale / 2) if nearest else (AB_BITS - INTER_BITS, scale / INTER_TAB_SIZE / 2)
    row_x = torch.round((m[:, 0, 1] * ys + m[:, 0, 2]) * scale) + rounding
    row_y = torch.round((m[:, 1, 1] * ys + m[:, 1, 2]) * scale) + rounding
    fixed_x = torch.floor((row_x + torch.round(m[:, 0, 0] * xs * scale)) / (1 << bits))  # an arithmetic shift
    fixed_y = torch.floor((row_y + torch.round(m[:, 1, 0] * xs * scale)) / (1 << bits))
    if nearest:
        return fixed_x, fixed_y
    return fixed_x / INTER_TAB_SIZE, fixed_y / INTER_TAB_SIZE


AB_BITS, INTER_BITS, INTER_TAB_SIZE = 10, 5, 32  # OpenCV 4's fixed point in warpAffine


@lru_cache(maxsize=1)
def warp_uses_table() -> bool:
    """Whether the installed ``cv2.warpAffine`` samples at 1/32 px steps (OpenCV 4) rather
    than at float positions (OpenCV 5): a ramp shifted by 1/64 px tells."""
    ramp = np.tile(np.arange(8, dtype=np.float32), (4, 1))
    shifted = cv2.warpAffine(ramp, np.float32([[1, 0, 1 / 64], [0, 1, 0]]), (8, 4), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return abs(float(shifted[1, 3]) - (3 + 1 / 32)) < 1e-4


def warp_linear(images: torch.Tensor, warps: torch.Tensor) -> torch.Tensor:
    """``cv2.warpAffine(image, warp, flags=INTER_LINEAR | WARP_INVERSE_MAP)`` of ``[N, C, H, W]``
    images (each pair's channels under its one warp): bilinear, zero outside (BORDER_CONSTANT)."""
    n, c, h, w = images.shape
    sx, sy = _sources(warps, h, w)
    x0, y0 = torch.floor(sx), torch.floor(sy)
    fx, fy = sx - x0, sy - y0
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1)).flatten(2)  # zeros one pixel around
    out = torch.zeros_like(images)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            index = ((yi.clamp(-1, h) + 1) * (w + 2) + xi.clamp(-1, w) + 1).long().flatten(1)
            taken = padded.gather(2, index[:, None].expand(n, c, -1)).view(n, c, h, w)
            out = out + taken * (wx * wy * inside)[:, None]
    return out


def warp_mask(warps: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``cv2.warpAffine`` of an all-ones mask with INTER_NEAREST: ``[N, H, W]`` bool.

    OpenCV 5 keeps a pixel whose source lies within half a pixel of the frame, edges
    included; OpenCV 4 one whose rounded source is inside.
    """
    if warp_uses_table():
        sx, sy = _sources(warps, h, w, nearest=True)
        return (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    sx, sy = _sources(warps, h, w)
    return (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)


def correlation_at(template: torch.Tensor, moving: torch.Tensor, warps: torch.Tensor) -> torch.Tensor:
    """``cpu.correlation_at`` of ``[N, H, W]`` pairs under ``[N, 2, 3]`` warps: ``[N]``."""
    shifted = warp_linear(moving[:, None], warps)[:, 0]
    t = template - template.mean(dim=(1, 2), keepdim=True)
    s = shifted - shifted.mean(dim=(1, 2), keepdim=True)
    spread = template.flatten(1).std(dim=1, unbiased=False) * shifted.flatten(1).std(dim=1, unbiased=False)
    value = (t * s).mean(dim=(1, 2)) / spread.clamp(min=1e-300)
    return torch.where(spread > 0, value, torch.zeros_like(value))


# --- ECC -----------------------------------------------------------------------------


class Prepared:
    """What ECC computes once per (template, image) before iterating: the blurred template,
    and the blurred image with its two gradients stacked ``[N, 3, H, W]``."""

    def __init__(self, template: torch.Tensor, image: torch.Tensor):
        self.template = _axis_filter(template, ECC_BLUR, REFLECT_101)
        blurred = _axis_filter(image, ECC_BLUR, REFLECT_101)
        gx = _along(blurred, GRADIENT, REFLECT_101, -1)
        gy = _along(blurred, GRADIENT, REFLECT_101, -2)
        self.stack = torch.stack([blurred, gx, gy], dim=1)


def ecc(prepared: Prepared, members: torch.Tensor, start: torch.Tensor, motion: int, iterations: int = ITERATIONS):
    """``cv2.findTransformECC`` of the pairs ``members`` of ``prepared`` from ``start`` ``[k, 2, 3]``.

    Returns the warps ``[k, 2, 3]``, the correlations ``[k]`` (as OpenCV's: that of the
    last iteration's start, before its step), ``[k]`` whether OpenCV would have raised, and
    ``[k]`` whether that was a close call (``lambda_d`` within ``LAMBDA_MARGIN`` of 0).
    """
    k = len(members)
    device = start.device
    h, w = prepared.template.shape[-2:]
    xs, ys = _grid(h, w, device)
    template, stack = prepared.template[members], prepared.stack[members]
    warp = _float32(start.clone())
    rho = torch.full((k,), -1.0, dtype=DTYPE, device=device)
    last = torch.full((k,), -EPS, dtype=DTYPE, device=device)
    failed = torch.zeros(k, dtype=torch.bool, device=device)
    doubtful = torch.zeros(k, dtype=torch.bool, device=device)
    running = torch.ones(k, dtype=torch.bool, device=device)
    for _ in range(iterations):
        running &= ((rho - last).abs() >= EPS) & ~failed
        live = running.nonzero()[:, 0]
        if len(live) == 0:
            break
        m = warp[live]
        warped = warp_linear(stack[live], m)
        image, gx, gy = warped[:, 0], warped[:, 1], warped[:, 2]
        mask = warp_mask(m, h, w).to(DTYPE)
        count = mask.sum(dim=(1, 2))
        t = template[live]
        img_mean = (image * mask).sum(dim=(1, 2)) / count
        tmp_mean = (t * mask).sum(dim=(1, 2)) / count
        image = image - img_mean[:, None, None] * mask  # outside the mask the warped values stay, as OpenCV's masked subtract leaves them
        t_zm = (t - tmp_mean[:, None, None]) * mask
        img_var = ((image * mask) ** 2).sum(dim=(1, 2)) / count
        tmp_var = (t_zm**2).sum(dim=(1, 2)) / count
        tmp_norm, img_norm = torch.sqrt(count * tmp_var), torch.sqrt(count * img_var)
        if motion == EUCLIDEAN:
            h0, h1 = m[:, 0, 0, None, None], m[:, 1, 0, None, None]  # cos and sin of the turn
            hat_x = -(xs * h1) - (ys * h0)
            hat_y = xs * h0 - ys * h1
            jacobian = torch.stack([gx * hat_x + gy * hat_y, gx, gy], dim=1)
        else:
            jacobian = torch.stack([gx * xs, gy * xs, gx * ys, gy * ys, gx, gy], dim=1)
        jacobian = jacobian.flatten(2)  # [n, P, HW]
        hessian = jacobian @ jacobian.transpose(1, 2)
        inverse, info = torch.linalg.inv_ex(hessian)
        inverse = torch.where((info == 0)[:, None, None], inverse, torch.zeros_like(inverse))  # as cv::Mat::inv of a singular matrix
        correlation = (t_zm * image).sum(dim=(1, 2))
        new_rho = correlation / (img_norm * tmp_norm)
        image_projection = (jacobian @ image.flatten(1)[:, :, None])[:, :, 0]
        template_projection = (jacobian @ t_zm.flatten(1)[:, :, None])[:, :, 0]
        iph = (inverse @ image_projection[:, :, None])[:, :, 0]
        lambda_n = img_norm * img_norm - (image_projection * iph).sum(dim=1)
        lambda_d = correlation - (template_projection * iph).sum(dim=1)
        bad = torch.isnan(new_rho) | ~(lambda_d > 0)
        lam = lambda_n / lambda_d
        error = lam[:, None, None] * t_zm - image
        delta = (inverse @ (jacobian @ error.flatten(1)[:, :, None]))[:, :, 0]
        last[live], rho[live] = rho[live], new_rho
        failed[live] |= bad
        doubtful[live] |= (lambda_d / correlation.abs()).abs() < LAMBDA_MARGIN
        warp[live] = torch.where(bad[:, None, None], m, _update(m, delta, motion))
    return warp, rho, failed, doubtful


def _float32(warps: torch.Tensor) -> torch.Tensor:
    """OpenCV keeps the warp in float32: its values rounded so."""
    return warps.to(torch.float32).to(DTYPE)


def _update(warps: torch.Tensor, delta: torch.Tensor, motion: int) -> torch.Tensor:
    """OpenCV's update_warping_matrix_ECC."""
    out = warps.clone()
    if motion == AFFINE:
        out[:, 0, 0] += delta[:, 0]
        out[:, 1, 0] += delta[:, 1]
        out[:, 0, 1] += delta[:, 2]
        out[:, 1, 1] += delta[:, 3]
        out[:, 0, 2] += delta[:, 4]
        out[:, 1, 2] += delta[:, 5]
        return _float32(out)
    theta = delta[:, 0] + torch.asin(warps[:, 1, 0].clamp(-1, 1))
    out[:, 0, 2] += delta[:, 1]
    out[:, 1, 2] += delta[:, 2]
    cos, sin = _float32(torch.cos(theta)), _float32(torch.sin(theta))
    out[:, 0, 0] = out[:, 1, 1] = cos
    out[:, 1, 0], out[:, 0, 1] = sin, -sin
    return _float32(out)


# --- the estimate ---------------------------------------------------------------------


DECISION_MARGIN = 1e-4  # correlation: ten times the largest difference between the paths seen (1.2e-5)
LAMBDA_MARGIN = 0.05  # lambda_d over the correlation: OpenCV raises at 0; seen at 0.68 and above, or -0.9 and below


def _near(a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """Where a decision of the CPU path compares two correlations this close, float rounding
    may decide it the other way, and a different branch moves the fit by whole pixels."""
    return (a - b).abs() < DECISION_MARGIN


def refine(prepared, raw, members, start, motion, doubt):
    """``cpu.refine``: ECC, or where OpenCV would raise, ``start`` and its correlation."""
    warp, rho, failed, doubtful = ecc(prepared, members, start, motion)
    doubt[members] |= doubtful
    if failed.any():
        at_start = correlation_at(raw[0][members], raw[1][members], start)
        warp = torch.where(failed[:, None, None], start, warp)
        rho = torch.where(failed, at_start, rho)
    return warp, rho


def fit(prepared, raw, members, start, doubt):
    """``cpu.fit``: the rigid fit, made affine where that gains ``AFFINE_GAIN``. Pairs whose
    branch float rounding could turn are marked in ``doubt`` (``[N]``, by member)."""
    rigid, rigid_rho = refine(prepared, raw, members, start, EUCLIDEAN, doubt)
    gate = 1 - cpu.AFFINE_GAIN + cpu.CORRELATION_ROUNDING
    doubt[members] |= _near(rigid_rho, gate)
    room = (rigid_rho <= gate).nonzero()[:, 0]
    if len(room):
        full, full_rho = refine(prepared, raw, members[room], rigid[room], AFFINE, doubt)
        doubt[members[room]] |= _near(full_rho, rigid_rho[room] + cpu.AFFINE_GAIN)
        keep = full_rho >= rigid_rho[room] + cpu.AFFINE_GAIN
        rigid[room] = torch.where(keep[:, None, None], full, rigid[room])
        rigid_rho[room] = torch.where(keep, full_rho, rigid_rho[room])
    return rigid, rigid_rho


def mirror_correlation(template, flipped, direct, doubt):
    """``cpu.mirror_correlation``: the mirrored view's rigid ECC in its two stages."""
    k = len(template)
    everyone = torch.arange(k, device=template.device)
    prepared = Prepared(template, flipped)
    start = _float32(_shift_warp(phase_shift(template, flipped)))
    warp, rho, failed, doubtful = ecc(prepared, everyone, start, EUCLIDEAN, cpu.MIRROR_FIRST_ITERATIONS)
    doubt |= doubtful | (~failed & _near(rho, direct - cpu.MIRROR_SLACK))
    going = (~failed & (rho >= direct - cpu.MIRROR_SLACK)).nonzero()[:, 0]
    if len(going):
        _, rest, rest_failed, doubtful = ecc(prepared, going, warp[going], EUCLIDEAN, ITERATIONS - cpu.MIRROR_FIRST_ITERATIONS)
        doubt[going] |= doubtful
        rho[going] = rest
        failed[going] = rest_failed
    if failed.any():
        rho = torch.where(failed, correlation_at(template, flipped, start), rho)
    return rho


def _shift_warp(shift: torch.Tensor) -> torch.Tensor:
    warps = torch.zeros((len(shift), 2, 3), dtype=DTYPE, device=shift.device)
    warps[:, 0, 0] = warps[:, 1, 1] = 1
    warps[:, :, 2] = shift
    return warps


def estimate(lq: torch.Tensor, hq: torch.Tensor, size: tuple[int, int], lq_width: int):
    """``cpu.estimate`` of a group of uint8 ``[N, 3, H, W]`` pairs, views of ``size`` = (width,
    height). Returns ``[N]`` whether each pair was measured (both frames carry detail), the
    fields of the measured ones (``[M]`` each, in their order), and ``[N]`` the pairs to
    score on the CPU path instead: those where a decision of the estimate (a frame's detail
    against ``MIN_STRUCTURE``, the affine gain, the restart from no move, the mirror's
    second stage, OpenCV's abandoning ECC) is so close that float rounding could turn it."""
    small_lq, small_hq = small_views(lq, hq, size)
    template, spread_t = structure_only(luma(small_lq))
    moving, spread_m = structure_only(luma(small_hq))
    measured = (spread_t >= cpu.MIN_STRUCTURE) & (spread_m >= cpu.MIN_STRUCTURE)
    defer = (spread_t - cpu.MIN_STRUCTURE).abs() < 1e-4 * cpu.MIN_STRUCTURE
    defer |= (spread_m - cpu.MIN_STRUCTURE).abs() < 1e-4 * cpu.MIN_STRUCTURE
    if not measured.all():  # a blank frame has nothing to align (and would make ECC's Hessian singular)
        template, moving = template[measured], moving[measured]
    n, h, w = template.shape
    if n == 0:
        return measured, {}, defer
    device = template.device
    members = torch.arange(n, device=device)
    doubt = torch.zeros(n, dtype=torch.bool, device=device)
    raw = (template, moving)
    prepared = Prepared(template, moving)
    warp, rho = fit(prepared, raw, members, _float32(_shift_warp(phase_shift(template, moving))), doubt)
    identity = _shift_warp(torch.zeros((n, 2), dtype=DTYPE, device=device))
    # Phase correlation misled some (see the CPU path): start again from no move.
    at_identity = correlation_at(template, moving, identity)
    doubt |= _near(rho, at_identity)
    again = (rho < at_identity).nonzero()[:, 0]
    if len(again):
        other, reached = fit(prepared, raw, members[again], identity[again], doubt)
        doubt[again] |= _near(reached, rho[again])
        better = reached > rho[again]
        warp[again] = torch.where(better[:, None, None], other, warp[again])
        rho[again] = torch.where(better, reached, rho[again])
    mirrored = mirror_correlation(template, moving.flip(-1), rho, doubt)
    corners = torch.tensor([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=DTYPE, device=device)
    moved = corners @ warp.transpose(1, 2) - corners[:, :2]
    centre = torch.tensor([w / 2, h / 2, 1], dtype=DTYPE, device=device)
    centre_moved = warp @ centre - centre[:2]
    per_plane_px = lq_width / w
    linear = warp[:, :, :2]
    fields = {
        "displacement_px": torch.hypot(moved[..., 0], moved[..., 1]).max(dim=1).values * per_plane_px,
        "mirror_gain": (mirrored - rho).clamp(min=0),
        "correlation": rho,
        "shift_x_px": centre_moved[:, 0] * per_plane_px,
        "shift_y_px": centre_moved[:, 1] * per_plane_px,
        "scale": torch.linalg.det(linear).abs().sqrt(),
        "rotation_deg": torch.rad2deg(torch.atan2(linear[:, 0, 1] - linear[:, 1, 0], linear[:, 0, 0] + linear[:, 1, 1])),
    }
    defer[measured.nonzero()[:, 0]] |= doubt
    return measured, fields, defer

