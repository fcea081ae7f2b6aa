"""``artifacts``: is the target itself clean, and is it restored at all?

No-reference measures on the HQ's luma at its own resolution, plus one comparison with the
LQ. Each is a ratio or a physical unit, so its threshold reads directly:

- ``blockiness``: mean absolute step across the strongest 8-px grid phase over the mean
  over all phases, both axes averaged. 1.0 for natural images; JPEG blocking raises it.
- ``noise``: noise standard deviation in grey levels, from the median absolute response
  of a Laplacian mask (Immerkaer) on the flattest 30% of the image.
- ``halo``: share of the pixels along the strongest 5% of edges where the image overshoots
  the range of its smoothed self (sigma 3) over a 21-px window by more than 5% of that
  range. Over-sharpening and ringing push edge pixels past the flat plateaus on both sides
  of every strong edge; textures and thin lines mostly stay within the range of their
  wider surroundings. (A 9-px window, tried first, read busy photos' texture as halo: the
  honest level then depended on the photo.) Only pixels with room to overshoot count: on
  the bright side of an edge the plateau must sit below white, on the dark side above
  black, by the 5%. Counting the others made photos with blown highlights and black
  shadows look clean however hard they were sharpened. The count keeps at least half the
  edge pixels, so a mostly clipped frame (a star field, lamps on a black sky) is not
  judged on its isolated highlights alone. On the calibration photos honest targets
  reach 0.34 and strongly sharpened ones start at 0.42; the limit, 0.38, is the midpoint.
- ``detail``: RMS of the finest band (image minus its sigma-1 blur) over the RMS of the
  next band (sigma 1 minus sigma 2). Natural photos sit above 1; over-smoothed, "plastic"
  targets and plain upscales fall well below.
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
- ``change``: RMS luma difference between the HQ (area-resized to the LQ's size) and the
  LQ, in grey levels, beyond the difference a bilinear upscale of the LQ would show (the
  two subtracted in quadrature). Both sides are blurred by 0.7 LQ px first: a resampling
  round trip loses the finest band, and at 4x, where a bilinear round trip blurs over two
  LQ pixels, that loss on thin rain streaks matched a real restoration's whole change. A
  restoration of a visibly degraded photo changes it by more than a few grey levels; a
  target that is the LQ upscaled does not ("not restored"). On the benchmark (1x, 2x and
  4x, both degradation sets) honest targets read 3.4 or more, targets that are the LQ
  denoised and upscaled 2.7 at most; the limit is 3.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ggtqc import Field, PairFilter, hookimpl
from ggtqc.planes import MIN_SIDE, luma, noise_sigma, percentile

HALO_WINDOW = 21  # px: wider than a sharpening rim, so the range spans the plateaus beside an edge
HALO_OVERSHOOT = 0.05  # of that range
CHANGE_BLUR = 0.7  # LQ px: below the finest band, which a resampling round trip loses


class Artifacts(PairFilter):
    name = "artifacts"
    version = "7"
    threadsafe = True
    cost = 6.0
    fields = (
        Field("blockiness", "lower", 1.3, "strongest 8-px grid step over the mean step"),
        Field("noise", "lower", 3.0, "noise sigma of the HQ, grey levels"),
        Field("halo", "lower", 0.38, "share of strong-edge pixels overshooting their 21-px range"),
        Field("detail", "higher", 0.9, "finest band RMS over the next band's"),
        Field("clipped", "lower", None, "share of pixels clipped in HQ beyond LQ (recorded only)"),
        Field("tonal_range", "higher", 24.0, "HQ luma range, 1st to 99th percentile, grey levels"),
        Field("change", "higher", 3.0, "RMS luma change from LQ beyond resampling, grey levels (not restored)"),
    )

    def score_pair(self, lq, hq):
        if min(*lq.shape[:2], *hq.shape[:2]) < MIN_SIDE:
            return {f.name: math.nan for f in self.fields}
        y, y_lq = luma(hq), luma(lq)
        return {
            "blockiness": blockiness(y),
            "noise": flat_noise_sigma(y),
            "halo": halo(y),
            "detail": detail(y),
            "clipped": clipped_share(y) - clipped_share(y_lq),
            "tonal_range": luma_range(y),
            "change": change(lq, hq, y_lq),
        }


def blockiness(y: np.ndarray) -> float:
    ratios = []
    for axis in (0, 1):
        steps = np.abs(np.diff(y, axis=axis)).mean(axis=1 - axis)
        usable = len(steps) // 8 * 8
        if usable < 16:
            return float("nan")
        phases = steps[:usable].reshape(-1, 8).mean(axis=0)
        ratios.append(phases.max() / max(float(phases.mean()), 1e-6))
    return float(np.mean(ratios))


def _gradient(plane: np.ndarray) -> np.ndarray:
    return cv2.magnitude(cv2.Sobel(plane, cv2.CV_32F, 1, 0), cv2.Sobel(plane, cv2.CV_32F, 0, 1))


def flat_noise_sigma(y: np.ndarray) -> float:
    """Noise sigma on the flattest 30% of the plane."""
    gradient = _gradient(cv2.GaussianBlur(y, (0, 0), 1.5))[1:-1, 1:-1]
    return noise_sigma(y, gradient <= percentile(gradient, 30))


def halo(y: np.ndarray) -> float:
    smooth = cv2.GaussianBlur(y, (0, 0), 3.0)
    window = np.ones((HALO_WINDOW, HALO_WINDOW), np.uint8)
    gradient = _gradient(smooth)
    strong = (gradient >= percentile(gradient, 95)).astype(np.uint8)
    near = cv2.dilate(strong, np.ones((5, 5), np.uint8)) > 0
    high, low = cv2.dilate(smooth, window)[near], cv2.erode(smooth, window)[near]
    y, smooth = y[near], smooth[near]
    span = np.maximum(high - low, 8.0)
    overshoots = (np.maximum(y - high, 0) + np.maximum(low - y, 0)) / span > HALO_OVERSHOOT
    # A pixel on the bright side of an edge can only overshoot if its plateau is not white
    # already, one on the dark side only if its plateau is not black.
    bright = smooth > (high + low) / 2
    room = np.where(bright, 255.0 - high, low) > HALO_OVERSHOOT * span
    # At least half the edge pixels stay in the count: where most plateaus are clipped, the
    # few left are mostly isolated highlights (lamps, stars), which overshoot any smoothed range.
    return float(overshoots[room].sum() / max(room.sum(), 0.5 * room.size))


def detail(y: np.ndarray) -> float:
    blur1 = cv2.GaussianBlur(y, (0, 0), 1.0)
    blur2 = cv2.GaussianBlur(y, (0, 0), 2.0)
    fine, next_band = y - blur1, blur1 - blur2
    return float(np.sqrt(np.mean(fine * fine) / max(float(np.mean(next_band * next_band)), 1e-6)))


def clipped_share(y: np.ndarray) -> float:
    """Share of pixels of a luma plane blown to white or crushed to black (within 2 of the ends)."""
    return float(((y >= 253) | (y <= 2)).mean())


def luma_range(y: np.ndarray) -> float:
    """Spread of a luma plane from its 1st to its 99th percentile, grey levels."""
    sample = np.ascontiguousarray(y[::2, ::2])  # a quarter of the pixels pin two percentiles as well, 4x faster
    return percentile(sample, 99) - percentile(sample, 1)


def rms_change(y_lq: np.ndarray, image: np.ndarray) -> float:
    """RMS difference between the LQ's luma and ``image`` area-resized to its size, both blurred by ``CHANGE_BLUR``."""
    down = luma(cv2.resize(image, (y_lq.shape[1], y_lq.shape[0]), interpolation=cv2.INTER_AREA))
    difference = cv2.GaussianBlur(down - y_lq, (0, 0), CHANGE_BLUR, borderType=cv2.BORDER_REFLECT)
    return float(np.sqrt(np.mean(difference * difference)))


def change(lq: np.ndarray, hq: np.ndarray, y_lq: np.ndarray) -> float:
    """:func:`rms_change` beyond what upscaling the LQ alone would give (in quadrature).

    A plain upscale, resized back, differs from the LQ by its resampling error, which thin,
    high-contrast detail such as rain streaks makes large; a bilinear round trip, the
    blurriest usual upscaler, bounds it. ``y_lq`` is the LQ's luma.
    """
    measured = rms_change(y_lq, hq)
    if hq.shape[0] <= lq.shape[0] and hq.shape[1] <= lq.shape[1]:
        return measured
    upscaled = cv2.resize(lq, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_LINEAR)
    resampling = rms_change(y_lq, upscaled)
    return math.sqrt(max(measured**2 - resampling**2, 0.0))


@hookimpl
def ggtqc_register_filters(register):
    register(Artifacts)
