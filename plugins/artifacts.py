"""``artifacts``: is the target itself clean, and is it restored at all?

No-reference measures on the HQ's luma at its own resolution, plus one comparison with the
LQ. Each is a ratio or a physical unit, so its threshold reads directly:

- ``blockiness``: how far a JPEG grid's phase steps above the mean step, over the mean
  step, both axes averaged; 1.0 for natural images. Two grids are read and the larger is
  the score: the HQ's own 8-px grid (its strongest phase) and, at 2x and 4x, the LQ's
  blocks carried into the HQ as tiles every 8 x scale px (one known phase, from the
  frame's origin). A grid steps in every period, so each phase's step leaves out its
  largest fifth of periods: a few long edges on one phase (a horizon, the rim of a disc)
  are no grid. The mean step is floored at 2 grey levels, about 1.5% of mid grey: over
  flat content a faint grid has a large ratio and is still invisible. On crops of the
  calibration photos clean, smoothed, and good-JPEG (quality 90-95) targets stay at or
  under 1.29, targets compressed at quality 25 read 1.40 and more, the LQ's blocks carried
  as tiles 1.27 and more; the limit is 1.3, and 1.235-1.365 is review (the default 5%
  margin), where the best JPEGs and the faintest tiles meet.
- ``noise``: noise standard deviation in grey levels, from the median absolute response
  of a Laplacian mask (Immerkaer) on the flattest 30% of the image.
- ``halo``: strong over-sharpening, a rim both widespread and strong: the smaller of the
  *rim share* (strong-edge pixels overshooting their smoothed 21-px range by 5% of it,
  over 0.38) and the *ringing strength* (across each strong edge, the smaller of the
  overshoots past its two plateaus over the step, 60th percentile of the edges, over
  0.22). Crisp targets (unsharp amount 0.3-0.7, as GAN and generative restorers make
  them) have a rim but a weak one. On crops of the calibration photos no honest target
  reaches 1, crisp ones reach 1.17 at most (3% over 1), targets sharpened at amount 2-3.5
  exceed 1 in 86% and 1.3 in 44%: between 1.0 and 1.2 both kinds occur, so that band is
  review (limit 1.1, margin 0.1), and over 1.2 the pair is rejected. A rim on most strong
  edges (share over 0.45) that is weak is either crisp sharpening or a soft halo, and no
  measure here tells which: the filter is unsure and the pair goes to review.
- ``detail``: RMS of the finest band (image minus its sigma-1 blur) over the RMS of the
  next band (sigma 1 minus sigma 2). Natural photos sit above 1 (honest targets of the
  standard benchmark 1.11 or more); over-smoothed targets and plain upscales fall well
  below (0.49-0.62 for the planted clear over-smoothing). Between 0.7 and 0.9 real
  network outputs on the calibration photos overlap: smooth but faithful ones read
  0.78-0.82, wax or cartoon ones 0.57-0.93. That band is review (limit 0.8, margin 0.1).
  Edge-preserving smoothing that keeps strong edges keeps this ratio too: most "plastic"
  targets pass it, a known gap (docs/detection.md).
- ``clipped``: share of pixels blown to white or crushed to black (luma within 2 grey
  levels of either end) in the HQ, minus that share in the LQ. Recorded, not decided on:
  brightening a hazy or dark photo legitimately saturates highlights its source had, and
  the benchmark's honest targets reach 27%.
- ``tonal_range``: the HQ's luma range from its 1st to its 99th percentile, grey levels.
  Below 24 the target is all but uniform: blank, blacked out or washed out, whatever
  structure is left in it (the content filters are blind to brightness and contrast, on
  purpose). Honest targets on the benchmark span 115 or more; the test photos darkened to
  a quarter of their brightness, as night scenes, 38 to 62. The HQ is judged on its own:
  removing bright rain or snow and denoising legitimately cut the range the LQ had, so
  much that a dark snowy scene restored honestly kept a tenth of it.
- ``change``: is the target restored at all? At the LQ's scale, the RMS luma difference
  between the HQ (area-resized) and the LQ beyond what a bilinear upscale of the LQ would
  show, both blurred by 0.7 LQ px (a resampling round trip loses the finest band). At 2x
  and 4x, the larger of that and the detail the HQ drew at its own scale: the RMS, above
  the band the LQ can hold, of what no upscale of the LQ explains (three interpolators and
  unsharp masks of several radii, fitted by least squares). A super-resolution target of a
  barely degraded source changes little at the LQ's scale but draws new detail above it;
  a plain, sharpened or denoised upscale draws none. On the benchmark honest targets read
  3.4 or more at the LQ's scale (1x to 4x, both degradation sets) and 4.3 or more at their
  own (calibration photos, 2x and 4x); upscales at most 2.7 and 2.5; the limit is 3.
  A smooth source leaves a restoration little to change, so grey levels alone cannot tell
  there. ``lq_detail`` says how much detail the source holds; where it is under 7.5 grey
  levels, the change is also read as a share of it: the change in the same band (the
  difference less its sigma-2 blur, so a shift of tone or brightness does not count; at
  2x and 4x, or the detail drawn at HQ scale), over ``lq_detail`` but at least 1 grey level
  (about 3.5 times the RMS of 8-bit rounding: below it a source holds no detail to read
  against), times 7.5. The larger of the two readings is the score. On the calibration
  photos (standard and shifted degradations, 1x, 2x and 4x) honest targets change at least
  0.405 of their source's detail and not-restored ones at most 0.30, so 3 / 0.405, rounded
  up, is 7.5, under which an honest target could fall under the limit in grey levels while
  its share stays honest; a not-restored one reads at most 0.30 x 7.5 = 2.3. No
  calibration pair is both that smooth and that little changed, so a pair that would not
  plainly pass in grey levels (under the limit plus its margin) and is lifted by the share
  goes to review, with a note giving both readings. The note speaks from the default
  limit: a filter does not see a run's thresholds.
- ``lq_detail``: the LQ's band-pass detail, RMS of its luma less its sigma-2 blur, grey
  levels (recorded only; what ``change`` is read against).

Devices: on CPU the NumPy/OpenCV code below runs; where the run's device is CUDA, the same
measures run batched on it (``ggtqc.kernels.artifacts``, pairs grouped by size). The
``GGTQC_FILTER_IMPL`` variable overrides the choice: ``torch`` runs the torch code on any
device (the parity tests run it on CPU), ``numpy`` the CPU code (docs/kernels.md).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from ggtqc import Field, PairFilter, PairScores, Scores, hookimpl
from ggtqc.decide import default_margin
from ggtqc.kernels.planes import TorchPath, size_groups, uploaded
from ggtqc.planes import MIN_SIDE, luma, noise_sigma, percentile

HALO_WINDOW = 21  # px: wider than a sharpening rim, so the range spans the plateaus beside an edge
HALO_OVERSHOOT = 0.05  # of that range
HALO_RIM = 0.38  # rim share at which ``halo`` reaches 1 if the rim is strong as well
HALO_RINGING = 0.22  # ringing strength at which ``halo`` reaches 1 if the rim is widespread as well
HALO_RIM_ALONE = 0.45  # rim share over which a weak rim sends the pair to review
HALO_OVERLAP = (1.0, 1.2)  # ``halo`` where moderately and strongly sharpened calibration targets both occur: review
HALO_PLATEAU = 8  # px along an edge's normal: past a sharpening rim, on the plateau
HALO_NEAR = (1, 2, 3, 4)  # px along the normal where a rim peaks
HALO_MIN_ROOM = 0.25  # share of edge pixels that must have room to ring for the strength to be read
CHANGE_BLUR = 0.7  # LQ px: below the finest band, which a resampling round trip loses
SHARPEN_RADII = (0.25, 0.5, 0.75, 1.0, 1.5)  # LQ px: unsharp masks of an upscale that new_detail takes as no restoration
NYQUIST_BLUR = 0.6  # LQ px: what remains above this blur is finer than a 2x or 4x LQ can hold
GRID_TRIM = 0.2  # share of periods, largest steps first, that a grid phase's mean leaves out
GRID_FLOOR = 2.0  # grey levels: a grid step must exceed this much, about 1.5% of mid grey, to be seen over flat content
FIT_STEP = 3  # new_detail fits its nine coefficients on every third pixel of each axis
CHANGE_LIMIT = 3.0  # ``change``'s default threshold, grey levels
CHANGE_MARGIN = default_margin(CHANGE_LIMIT, None)  # its default review margin
SMOOTH_SOURCE = 7.5  # grey levels of LQ detail under which ``change`` is also read as a share of it (module doc)
DETAIL_BLUR = 2.0  # LQ px: ``lq_detail`` is the LQ's luma less this blur
MIN_DETAIL = 1.0  # grey levels: the least detail a share is read against, ~3.5x the RMS of 8-bit rounding


class Artifacts(TorchPath, PairFilter):
    name = "artifacts"
    version = "13"
    threadsafe = True
    cost = 6.0
    fields = (
        Field("blockiness", "lower", 1.3, "8-px grid step (or the LQ's grid at 8 x scale) over the mean step"),
        Field("noise", "lower", 3.0, "noise sigma of the HQ, grey levels"),
        Field("halo", "lower", 1.1, "rim share over 0.38 or ringing strength over 0.22, whichever is smaller", margin=0.1),
        Field("detail", "higher", 0.8, "finest band RMS over the next band's", margin=0.1),
        Field("clipped", "lower", None, "share of pixels clipped in HQ beyond LQ (recorded only)"),
        Field("tonal_range", "higher", 24.0, "HQ luma range, 1st to 99th percentile, grey levels"),
        Field("change", "higher", CHANGE_LIMIT, "RMS luma change from LQ beyond resampling, grey levels, or a smooth LQ's share of detail changed (not restored)"),
        Field("lq_detail", "higher", None, "LQ luma less its sigma-2 blur, RMS, grey levels (recorded only)"),
    )

    def score(self, batch):
        if self.on_torch():
            return self._score_torch(batch)
        return super().score(batch)

    def score_pair(self, lq, hq):
        if min(*lq.shape[:2], *hq.shape[:2]) < MIN_SIDE:
            return {f.name: math.nan for f in self.fields}
        y, y_lq = luma(hq), luma(lq)
        gx, gy, magnitude = smoothed_gradient(y, 1.5)  # noise and ringing read the same one
        rim, ringing = rim_share(y), ringing_strength(y, gx, gy, magnitude)
        scale = integer_scale(lq, hq)
        inside = unclipped(y)
        scores = {
            "blockiness": blockiness(y, scale),
            "noise": flat_noise_sigma(y, magnitude),
            "halo": halo(rim, ringing),
            "detail": detail(y),
            "clipped": clipped_share(inside) - clipped_share(unclipped(y_lq)),
            "tonal_range": luma_range(y),
        }
        scores["lq_detail"] = lq_detail = band_rms(y_lq, DETAIL_BLUR)
        measured, share, scores["change"] = change_reading(*change(lq, hq, y_lq), new_detail(y_lq, y, scale, inside), lq_detail)
        note = unsure_note(rim, ringing, scores["halo"], measured, scores["change"], lq_detail, share)
        return PairScores(scores, note) if note else scores

    def _score_torch(self, batch):
        """The same measures as :meth:`score_pair`, a size group of pairs at a time
        (``ggtqc.kernels.artifacts``), at most ``CHUNK_PIXELS`` HQ pixels per call."""
        from ggtqc.kernels import artifacts as kernel

        names = [f.name for f in self.fields]
        columns: dict[str, list[float]] = {name: [math.nan] * len(batch) for name in names}
        unsure: list[str | None] = [None] * len(batch)
        for members in size_groups(batch.lq, batch.hq).values():
            lq, hq = batch.lq[members[0]], batch.hq[members[0]]
            if min(*lq.shape[:2], *hq.shape[:2]) < MIN_SIDE:
                continue  # not measured, as score_pair
            if hq.shape[0] < lq.shape[0] or hq.shape[1] < lq.shape[1]:  # an HQ smaller than its LQ: rare, left to the CPU path
                for i in members:
                    self.score_on_cpu(i, batch, columns, unsure)
                continue
            scale = integer_scale(lq, hq)
            chunk = max(1, kernel.CHUNK_PIXELS // (hq.shape[0] * hq.shape[1]))
            for start in range(0, len(members), chunk):
                part = members[start : start + chunk]
                out = kernel.measure(*uploaded(batch, part, self.device), scale)
                direct = [name for name in names if name != "change"]  # change is read from its parts below
                extra = ("rim", "ringing", "overall", "in_detail_band", "drawn")
                table = torch.stack([out[name] for name in (*direct, *extra)], dim=1).cpu().tolist()
                for i, row in zip(part, table):
                    scores = dict(zip(direct, row))
                    rim, ringing, *parts = row[len(direct) :]
                    grey_levels, share, scores["change"] = change_reading(*parts, scores["lq_detail"])
                    for name, value in scores.items():
                        columns[name][i] = value
                    unsure[i] = unsure_note(rim, ringing, scores["halo"], grey_levels, scores["change"], scores["lq_detail"], share)
        return Scores(columns, unsure=unsure) if any(unsure) else columns


def change_reading(overall: float, in_detail_band: float, drawn: float, lq_detail: float) -> tuple[float, float, float]:
    """``change`` from its parts (module doc): the change in grey levels (the larger of
    :func:`change`'s ``overall`` and :func:`new_detail`'s ``drawn``), the share of a smooth
    source's detail changed (0 for a detailed one), and the score, the larger reading."""
    measured = max(overall, drawn)
    share = max(in_detail_band, drawn) / max(lq_detail, MIN_DETAIL) if lq_detail < SMOOTH_SOURCE else 0.0
    return measured, share, max(measured, share * SMOOTH_SOURCE)


def unsure_note(rim: float, ringing: float, halo_score: float, measured: float, change_score: float, lq_detail: float, share: float) -> str | None:
    """Why the filter is unsure of a pair, or None: a widespread, weak rim (see :func:`halo`);
    a ``change`` lifted by a smooth source's share of detail from where the default limit
    would not plainly pass it to where it would not reject it (module doc). ``measured`` is
    the change in grey levels, ``share`` the share of the source's detail changed."""
    unsure = []
    if rim >= HALO_RIM_ALONE and halo_score < HALO_OVERLAP[0]:
        unsure.append(f"halo: a rim on {rim:.0%} of the strong edges, but weak (ringing {ringing:.2f}): crisp, or over-sharpened; look")
    lifted = change_score > measured
    if lifted and measured < CHANGE_LIMIT + CHANGE_MARGIN and change_score >= CHANGE_LIMIT - CHANGE_MARGIN:
        unsure.append(
            f"change: {measured:.2f} grey levels, but the source is smooth (lq_detail {lq_detail:.2f}) and "
            f"{share:.0%} of its detail changed (reads {change_score:.2f}): restored, or barely touched; look"
        )
    return "; ".join(unsure) or None


def blockiness(y: np.ndarray, scale: int = 1) -> float:
    """The HQ's own 8-px grid (its strongest phase), or the LQ's grid carried to HQ scale, whichever is stronger.

    At ``scale`` 2 or more, the LQ's JPEG blocks, if restored as tiles, step every
    ``8 * scale`` HQ px from the frame's origin; that phase is known, so it alone is read
    (the strongest of 16 or 32 phases would read a few strong edges as a grid).
    """
    # mean absolute step between neighbouring rows, and between neighbouring columns
    steps = (cv2.absdiff(y[1:], y[:-1]).mean(axis=1), cv2.absdiff(y[:, 1:], y[:, :-1]).mean(axis=0))
    own = grid_ratio(steps, 8)
    if scale < 2:
        return own
    return float(np.nanmax([own, grid_ratio(steps, 8 * scale, phase=8 * scale - 1)]))


def grid_ratio(steps: tuple[np.ndarray, np.ndarray], period: int, phase: int | None = None) -> float:
    """One phase of a ``period``-px grid: 1 + its step's excess over the mean step, over the mean step.

    ``steps`` are the mean steps between neighbouring rows and between neighbouring columns
    (see :func:`blockiness`); the two axes' ratios are averaged. Per axis, a phase's step is
    the mean over periods after dropping its ``GRID_TRIM`` largest (a block grid steps in
    every period, a few long edges, such as a horizon or the rim of a disc, in a few). The
    mean step is floored at ``GRID_FLOOR`` grey levels: a faint grid over flat content is
    invisible, however large its ratio. ``phase`` None takes the strongest phase;
    otherwise the step between pixels ``phase`` and ``phase + 1`` of each period.
    """
    ratios = []
    for axis_steps in steps:
        usable = len(axis_steps) // period * period
        if usable < 2 * period:
            return float("nan")
        periods = np.sort(axis_steps[:usable].reshape(-1, period), axis=0)
        kept = max(2, round(len(periods) * (1 - GRID_TRIM)))
        phases = periods[:kept].mean(axis=0)
        step = phases.max() if phase is None else phases[phase]
        mean = float(phases.mean())
        ratios.append(1 + (step - mean) / max(mean, GRID_FLOOR))
    return float(np.mean(ratios))


def integer_scale(lq: np.ndarray, hq: np.ndarray) -> int:
    """The whole-number HQ/LQ scale, if both sides agree on it within a pixel per LQ pixel; else 1."""
    scale = round(hq.shape[0] / lq.shape[0])
    if scale < 2 or any(abs(h - scale * l) > scale for h, l in zip(hq.shape[:2], lq.shape[:2])):
        return 1
    return scale


def _gradient(plane: np.ndarray) -> np.ndarray:
    return cv2.magnitude(cv2.Sobel(plane, cv2.CV_32F, 1, 0), cv2.Sobel(plane, cv2.CV_32F, 0, 1))


def smoothed_gradient(y: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sobel gradients x and y of ``y`` blurred by ``sigma``, and their magnitude."""
    smooth = cv2.GaussianBlur(y, (0, 0), sigma)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    return gx, gy, cv2.magnitude(gx, gy)


def flat_noise_sigma(y: np.ndarray, magnitude: np.ndarray) -> float:
    """Noise sigma on the flattest 30% of the plane; ``magnitude`` is its gradient at sigma 1.5 (:func:`smoothed_gradient`)."""
    gradient = magnitude[1:-1, 1:-1]
    return noise_sigma(y, gradient <= percentile(gradient, 30))


def rim_share(y: np.ndarray) -> float:
    """Share of the pixels along the strongest 5% of edges that overshoot their 21-px range by 5% of it."""
    smooth = cv2.GaussianBlur(y, (0, 0), 3.0)
    window = np.ones((HALO_WINDOW, HALO_WINDOW), np.uint8)
    gradient = _gradient(smooth)
    strong = (gradient >= percentile(gradient, 95)).astype(np.uint8)
    xs, ys = nonzero(cv2.dilate(strong, np.ones((5, 5), np.uint8)))  # about a tenth of the pixels
    near = ys.astype(np.intp) * y.shape[1] + xs  # flat indices, as np.flatnonzero gives them
    high, low = cv2.dilate(smooth, window).take(near), cv2.erode(smooth, window).take(near)
    y, smooth = y.take(near), smooth.take(near)
    span = np.maximum(high - low, 8.0)
    overshoots = (np.maximum(y - high, 0) + np.maximum(low - y, 0)) / span > HALO_OVERSHOOT
    # A pixel on the bright side of an edge can only overshoot if its plateau is not white
    # already, one on the dark side only if its plateau is not black.
    bright = smooth > (high + low) / 2
    room = np.where(bright, 255.0 - high, low) > HALO_OVERSHOOT * span
    # At least half the edge pixels stay in the count: where most plateaus are clipped, the
    # few left are mostly isolated highlights (lamps, stars), which overshoot any smoothed range.
    return float(overshoots[room].sum() / max(room.sum(), 0.5 * room.size))


def nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows of a uint8 mask's nonzero pixels in row-major order (np.nonzero's, swapped), faster."""
    found = cv2.findNonZero(mask)
    return found.reshape(-1, 2).T if found is not None else np.empty((2, 0), np.int32)


def halo(rim: float, ringing: float) -> float:
    """Strong over-sharpening, in multiples of the limits: a rim that is both widespread and
    strong, the smaller of :func:`rim_share` over ``HALO_RIM`` and :func:`ringing_strength`
    over ``HALO_RINGING``. Where no edge has room to ring (NaN strength), the rim share over
    ``HALO_RIM``. A rim on most strong edges (``HALO_RIM_ALONE``) that is weak is crisp
    sharpening or a soft halo, which no measure here tells apart: the filter says it is
    unsure, and the pair goes to review."""
    return rim / HALO_RIM if math.isnan(ringing) else min(rim / HALO_RIM, ringing / HALO_RINGING)


def ringing_strength(y: np.ndarray, gx: np.ndarray, gy: np.ndarray, magnitude: np.ndarray) -> float:
    """How strongly strong edges ring: the 60th percentile of each edge's weaker overshoot, over its step.

    At each pixel of the strongest 5% of edges (thinned to the gradient's local maxima)
    the luma is read along the edge's normal: its plateaus ``HALO_PLATEAU`` px out on
    either side, the highest value within ``HALO_NEAR`` px on the bright side and the
    lowest on the dark side. Sharpening overshoots both plateaus at once, by a share of
    the step that grows with its strength; a texture or a thin line rises past one side
    only, so the smaller of the two overshoots is the edge's ringing. Edges whose plateaus
    are clipped, or whose step is under 16 grey levels, are left out. NaN where fewer
    than 10, or under ``HALO_MIN_ROOM`` of the edge pixels, are left: between blown
    whites and crushed blacks, sharpening clips instead of ringing. ``gx``, ``gy`` and
    ``magnitude`` are the gradient of ``y`` at sigma 1.5 (:func:`smoothed_gradient`).
    """
    edges = (magnitude >= percentile(magnitude, 95)) & (magnitude >= cv2.dilate(magnitude, np.ones((3, 3), np.uint8)))
    xs, ys = nonzero((edges & (magnitude > 0)).view(np.uint8))
    if len(ys) < 10:
        return math.nan
    nx, ny = gx[ys, xs] / magnitude[ys, xs], gy[ys, xs] / magnitude[ys, xs]  # toward the bright side

    def along(distance: float) -> np.ndarray:
        map_x, map_y = (xs + distance * nx).astype(np.float32)[None], (ys + distance * ny).astype(np.float32)[None]
        return cv2.remap(y, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)[0]

    bright, dark = along(HALO_PLATEAU), along(-HALO_PLATEAU)
    peak = np.max([along(d) for d in HALO_NEAR], axis=0)
    trough = np.min([along(-d) for d in HALO_NEAR], axis=0)
    step = bright - dark
    room = (step > 16) & (bright < 245) & (dark > 10)
    if room.sum() < max(10, HALO_MIN_ROOM * len(room)):
        return math.nan
    over = np.maximum(peak - bright, 0)[room] / step[room]
    under = np.maximum(dark - trough, 0)[room] / step[room]
    return float(np.percentile(np.minimum(over, under), 60))


def detail(y: np.ndarray) -> float:
    blur1 = cv2.GaussianBlur(y, (0, 0), 1.0)
    blur2 = cv2.GaussianBlur(y, (0, 0), 2.0)
    # mean squares of the two bands, summed in float64 without making the band planes
    fine, next_band = cv2.norm(y, blur1, cv2.NORM_L2SQR) / y.size, cv2.norm(blur1, blur2, cv2.NORM_L2SQR) / y.size
    return math.sqrt(fine / max(next_band, 1e-6))


def band_rms(y: np.ndarray, sigma: float) -> float:
    """RMS of a luma plane less its Gaussian blur of ``sigma`` px: how much detail it holds."""
    return math.sqrt(cv2.norm(y, cv2.GaussianBlur(y, (0, 0), sigma), cv2.NORM_L2SQR) / y.size)


def unclipped(y: np.ndarray) -> np.ndarray:
    """1 where a luma plane is more than 2 grey levels from either end, else 0 (uint8)."""
    return ((y > 2) & (y < 253)).view(np.uint8)


def clipped_share(inside: np.ndarray) -> float:
    """Share of pixels blown to white or crushed to black (within 2 of the ends); ``inside`` is :func:`unclipped`."""
    return (inside.size - cv2.countNonZero(inside)) / inside.size


def luma_range(y: np.ndarray) -> float:
    """Spread of a luma plane from its 1st to its 99th percentile, grey levels."""
    sample = np.ascontiguousarray(y[::2, ::2])  # a quarter of the pixels pin two percentiles as well, 4x faster
    return percentile(sample, 99) - percentile(sample, 1)


def rms_change(y_lq: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    """RMS difference between the LQ's luma and ``image`` area-resized to its size, both
    blurred by ``CHANGE_BLUR``; and the same for the difference's band above ``DETAIL_BLUR``
    (what ``lq_detail`` reads: no change of tone or brightness)."""
    down = luma(cv2.resize(image, (y_lq.shape[1], y_lq.shape[0]), interpolation=cv2.INTER_AREA))
    difference = cv2.GaussianBlur(down - y_lq, (0, 0), CHANGE_BLUR, borderType=cv2.BORDER_REFLECT)
    in_band = cv2.norm(difference, cv2.GaussianBlur(difference, (0, 0), DETAIL_BLUR), cv2.NORM_L2SQR) / difference.size
    return float(np.sqrt(np.mean(difference * difference))), math.sqrt(in_band)


def change(lq: np.ndarray, hq: np.ndarray, y_lq: np.ndarray) -> tuple[float, float]:
    """:func:`rms_change` (both readings) beyond what upscaling the LQ alone would give (in quadrature).

    A plain upscale, resized back, differs from the LQ by its resampling error, which thin,
    high-contrast detail such as rain streaks makes large; a bilinear round trip, the
    blurriest usual upscaler, bounds it. ``y_lq`` is the LQ's luma.
    """
    measured = rms_change(y_lq, hq)
    if hq.shape[0] <= lq.shape[0] and hq.shape[1] <= lq.shape[1]:
        return measured
    upscaled = cv2.resize(lq, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_LINEAR)
    resampling = rms_change(y_lq, upscaled)
    return tuple(math.sqrt(max(m**2 - r**2, 0.0)) for m, r in zip(measured, resampling))


def new_detail(y_lq: np.ndarray, y: np.ndarray, scale: int, inside: np.ndarray) -> float:
    """RMS of the HQ's luma ``y`` above the LQ's Nyquist band that no upscale of the LQ explains.

    The HQ is fitted by least squares from the LQ's luma ``y_lq`` upscaled three ways
    (bilinear, bicubic, Lanczos) and from unsharp-mask terms (the LQ's luma less its blur at
    several radii, upscaled bicubically), so any plain upscale, sharpened or not, is in the
    span. What the fit leaves, high-passed at 0.6 LQ px (the band a 2x or 4x LQ cannot
    hold), is detail the target drew. Pixels at or next to clipping are left out: clipping
    a sharpened upscale is not linear. The nine coefficients are fitted on every
    ``FIT_STEP``-th pixel of each axis, plenty for nine numbers; the residual is read on
    all. 0 for a 1x pair (``scale`` under 2: the LQ-scale ``change`` decides there).
    ``inside`` is ``y``'s :func:`unclipped`.
    """
    if scale < 2:
        return 0.0
    usable = cv2.erode(inside, np.ones((3, 3), np.uint8))
    fit = usable[::FIT_STEP, ::FIT_STEP] > 0
    # blurred at the LQ's scale, then upscaled: a sixteenth of the work of blurring at the HQ's
    bicubic_terms = [y_lq, *(y_lq - cv2.GaussianBlur(y_lq, (0, 0), k) for k in SHARPEN_RADII)]
    if fit.sum() < (len(bicubic_terms) + 2 + 1) * 10:
        return 0.0
    size = (y.shape[1], y.shape[0])
    bilinear = cv2.resize(y_lq, size, interpolation=cv2.INTER_LINEAR)
    lanczos = cv2.resize(y_lq, size, interpolation=cv2.INTER_LANCZOS4)
    # One buffer for every bicubic upscale, of which only the samples are kept: a fresh
    # full-size array for each made new_detail 40 ms of CPU instead of 24 on a 2x 1024 px pair.
    upscaled = np.empty_like(y)
    sampled = []
    for term in bicubic_terms:
        cv2.resize(term, size, dst=upscaled, interpolation=cv2.INTER_CUBIC)
        sampled.append(upscaled[::FIT_STEP, ::FIT_STEP].copy())
    sampled += [bilinear[::FIT_STEP, ::FIT_STEP], lanczos[::FIT_STEP, ::FIT_STEP], 1.0, y[::FIT_STEP, ::FIT_STEP]]
    # A sample left out of the fit is a zero row: it adds nothing to the normal equations.
    rows = np.empty((len(sampled), *fit.shape))
    for row, plane in zip(rows, sampled):
        np.multiply(plane, fit, out=row)
    rows = rows.reshape(len(sampled), -1)
    coef = least_squares(rows[:-1], rows[-1])
    # Resizing is linear: the bicubic terms' weighted sum, upscaled once, is their upscales' weighted sum.
    combined = sum(np.float32(c) * t for c, t in zip(coef, bicubic_terms))
    model = cv2.resize(combined, size, dst=upscaled, interpolation=cv2.INTER_CUBIC)
    cv2.add(model, cv2.addWeighted(bilinear, coef[-3], lanczos, coef[-2], coef[-1], dst=bilinear), dst=model)
    residual = cv2.subtract(y, model, dst=model)
    high = cv2.subtract(residual, cv2.GaussianBlur(residual, (0, 0), NYQUIST_BLUR * scale, dst=lanczos), dst=residual)
    return math.sqrt(cv2.norm(high, cv2.NORM_L2SQR, usable) / cv2.countNonZero(usable))


def least_squares(basis: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Coefficients of the rows of ``basis`` (terms x samples) that best fit ``target``.

    Through the normal equations, each term scaled to unit norm: a terms x terms solve, not
    a factorisation of the whole tall matrix. The upscales are nearly collinear (condition
    number about 1e7 unscaled), but the residual, which is all new_detail reads, barely
    notices: against ``np.linalg.lstsq``, ``change`` moved by at most 1.2e-6 grey levels on
    594 benchmark pairs (docs/performance.md).
    """
    gram, moment = basis @ basis.T, basis @ target
    norms = np.sqrt(np.diag(gram))
    norms[norms == 0] = 1.0
    solution, *_ = np.linalg.lstsq(gram / np.outer(norms, norms), moment / norms, rcond=None)
    return solution / norms


@hookimpl
def ggtqc_register_filters(register):
    register(Artifacts)
