"""``geometry``: is the target's scene where the source's is? Global transform at low resolution.

Both images are area-pooled to a common size (LQ long side ``analysis_side``, 256 px), made
blind to brightness, contrast and haze (luma minus its local mean, over a ~12% window),
then aligned: phase correlation gives the shift, ECC (OpenCV's enhanced correlation
coefficient, itself invariant to gain and offset) refines a rigid move (shift and rotation)
and then a full affine transform (scale and shear too), starting again from no move where
the shift misled it. The affine fit is kept only if it raises the correlation by 0.02 or
more over the rigid one. On the planted-fault benchmark's calibration photos, scale and
shear gained honest pairs and twins (1,680 of the standard, 4x and shifted sets) at most
0.0085, fitting snow, smoke or grain, and moved a corner by 3-9 LQ px doing so (46 on a
test's snowy crop); zooming each standard honest target by 3% made them gain 0.02 or more
for 285 of 288 (median 0.13).
The target mirrored is aligned too, rigidly, from its shift alone.

- ``displacement_px``: how far the frame's corners move under the estimated transform, in
  LQ pixels. A restoration may shift its frame by a pixel or two, and the estimate itself
  wanders by about a pixel: 3 px is the default limit.
- ``mirror_gain``: how much better the mirrored target correlates with the source than the
  target itself (0 when mirroring does not help); above 0.1 the target is mirrored.
- ``correlation``: ECC correlation of the aligned images (recorded only).
- ``shift_x_px``, ``shift_y_px``, ``scale``, ``rotation_deg``: the estimate itself
  (recorded only), so a rejection says what moved: where the frame's centre went, in LQ
  pixels (right and down positive); how much larger the target's content appears; and its
  turn, counter-clockwise as seen on screen positive.

A blank frame (under 0.5 grey levels of RMS detail at the analysis size) on either side, or
a view under 16 px, has no position to estimate: every field is NaN, not measured.

Devices: on CPU the NumPy/OpenCV code below runs; where the run's device is CUDA, the same
estimate runs batched on it (``ggtqc.kernels.geometry``, pairs grouped by size, ECC
iterated for a group together), except for a pair whose estimate takes a branch by a margin
float rounding could turn: the CPU code scores that one. The ``GGTQC_FILTER_IMPL`` variable
overrides the choice: ``torch`` runs the torch code on any device (the parity tests run it
on CPU), ``numpy`` the CPU code (docs/kernels.md).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from ggtqc import Field, PairFilter, hookimpl
from ggtqc.kernels.planes import TorchPath, size_groups, uploaded
from ggtqc.planes import common_size, luma, small_pair

ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
MIN_STRUCTURE = 0.5  # grey levels of detail (RMS) below which a frame is blank to alignment
IDENTITY = np.eye(2, 3, dtype=np.float32)  # the warp of no move
AFFINE_GAIN = 0.02  # correlation that scale and shear must add to a rigid fit to be kept
CORRELATION_ROUNDING = 1e-4  # far more than a float32 correlation's rounding past 1
# The mirrored view's ECC runs these iterations first, and its remaining ones only while it
# is within MIRROR_SLACK of the direct fit's correlation (see mirror_correlation).
MIRROR_FIRST_ITERATIONS = 10
MIRROR_SLACK = 0.25


class Geometry(TorchPath, PairFilter):
    name = "geometry"
    version = "6"
    threadsafe = True
    cost = 18.0
    fields = (
        Field("displacement_px", "lower", 3.0, "largest corner movement under the HQ->LQ transform, LQ px"),
        Field("mirror_gain", "lower", 0.1, "correlation gained by mirroring the HQ"),
        Field("correlation", "higher", None, "ECC correlation after alignment (recorded only)"),
        Field("shift_x_px", "lower", None, "the frame centre's move right, LQ px, signed (recorded only)"),
        Field("shift_y_px", "lower", None, "the frame centre's move down, LQ px, signed (recorded only)"),
        Field("scale", "lower", None, "how much larger the HQ's content appears (recorded only)"),
        Field("rotation_deg", "lower", None, "the HQ content's turn, degrees, counter-clockwise (recorded only)"),
    )
    options = {"analysis_side": 256}

    def score(self, batch):
        if self.on_torch():
            return self._score_torch(batch)
        return super().score(batch)

    def score_pair(self, lq, hq):
        return estimate(lq, hq, int(self.settings["analysis_side"]))

    def _score_torch(self, batch):
        """The same estimate as :func:`estimate`, a size group of pairs at a time (``ggtqc.kernels.geometry``)."""
        from ggtqc.kernels import geometry as kernel

        side = int(self.settings["analysis_side"])
        names = [f.name for f in self.fields]
        columns: dict[str, list[float]] = {name: [math.nan] * len(batch) for name in names}
        for members in size_groups(batch.lq, batch.hq).values():
            lq, hq = batch.lq[members[0]], batch.hq[members[0]]
            size = common_size(lq, side)
            if min(size) < 16 or hq.shape[1] < size[0] or hq.shape[0] < size[1]:
                # A view under 16 px is not measured; an HQ smaller than the view (area
                # resizing only shrinks) is rare: both left to the CPU path.
                for i in members:
                    self.score_on_cpu(i, batch, columns)
                continue
            measured, fields, defer = kernel.estimate(*uploaded(batch, members, self.device), size, lq.shape[1])
            kept = [i for i, ok in zip(members, measured.cpu().tolist()) if ok]
            table = torch.stack([fields[name] for name in names], dim=1).cpu().tolist() if kept else []
            for i, row in zip(kept, table):
                for name, value in zip(names, row):
                    columns[name][i] = value
            # A decision so close that float rounding could turn it: the CPU path decides.
            for i, close in zip(members, defer.cpu().tolist()):
                if close:
                    self.score_on_cpu(i, batch, columns)
        return columns


def structure_only(plane: np.ndarray) -> np.ndarray | None:
    """Luma minus its local mean, scaled to unit variance: no brightness, contrast or haze.

    None for a featureless plane (a blank frame), which has no position to estimate.
    """
    window = max(3, round(0.12 * max(plane.shape)))
    detail = plane - cv2.blur(plane, (window, window), borderType=cv2.BORDER_REFLECT)
    spread = float(detail.std())
    return detail / spread if spread >= MIN_STRUCTURE else None


def shift_start(template: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """The phase-correlation shift, as a warp for ECC to start from."""
    window = cv2.createHanningWindow(template.shape[::-1], cv2.CV_32F)
    # copies: OpenCV 4 windows the planes in place where their size is a fast DFT size, and ECC then fits windowed planes
    (dx, dy), _ = cv2.phaseCorrelate(template.copy(), moving.copy(), window)
    return np.array([[1, 0, dx], [0, 1, dy]], np.float32)


def fit(template: np.ndarray, moving: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, float]:
    """A rigid move (shift and turn) from ``start``, made affine only where that clearly pays.

    Scale and shear fitted to a weakly structured or particle-strewn frame drift, and a
    drift of 0.5% in scale moves a corner by over a pixel (see the module docstring).
    """
    rigid, rigid_correlation = refine(template, moving, start, cv2.MOTION_EUCLIDEAN)
    if rigid_correlation > 1 - AFFINE_GAIN + CORRELATION_ROUNDING:
        return rigid, rigid_correlation  # no correlation exceeds 1: an affine fit could not gain enough
    full, full_correlation = refine(template, moving, rigid, cv2.MOTION_AFFINE)
    if full_correlation >= rigid_correlation + AFFINE_GAIN:
        return full, full_correlation
    return rigid, rigid_correlation


def refine(template: np.ndarray, moving: np.ndarray, start: np.ndarray, motion: int) -> tuple[np.ndarray, float]:
    """ECC of ``motion`` from ``start``; if it does not converge, ``start`` and its correlation."""
    try:
        warp = start.copy()  # ECC writes its result into the array it starts from
        correlation, warp = cv2.findTransformECC(template, moving, warp, motion, ECC_CRITERIA, None, 3)
        return warp, float(correlation)
    except cv2.error:
        return start, correlation_at(template, moving, start)


def mirror_correlation(template: np.ndarray, flipped: np.ndarray, direct: float) -> float:
    """The rigid ECC correlation of the mirrored view, as :func:`refine` gives it, in two stages.

    Its first ``MIRROR_FIRST_ITERATIONS`` iterations run, then the rest from where they
    stopped: ECC carries nothing between iterations but the warp, so the two stages are
    the one run. On an honest pair the mirrored view fits badly, and ECC wanders for all
    its 100 iterations (two thirds of the filter's time): where the first stage leaves it
    more than ``MIRROR_SLACK`` below the direct fit, the rest is skipped, since
    ``mirror_gain`` is 0 unless the mirror beats the direct fit. On 84 pairs (the
    throughput benchmark's photos at 2x and 4x, and examples/pairs) the later iterations
    raised it by at most 0.11 (median 0.006); on 460 planted-fault pairs no ``mirror_gain``
    crossed its threshold either way. Where both stages run, the second starts one
    iteration later than an uninterrupted run would stop if the first had just converged:
    ``mirror_gain`` then moves by ECC's tolerance (at most 5e-5 seen; docs/performance.md).
    """
    start = shift_start(template, flipped)
    first = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, MIRROR_FIRST_ITERATIONS, ECC_CRITERIA[2])
    try:
        correlation, warp = cv2.findTransformECC(template, flipped, start.copy(), cv2.MOTION_EUCLIDEAN, first, None, 3)
        if correlation < direct - MIRROR_SLACK:
            return float(correlation)
        rest = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_CRITERIA[1] - MIRROR_FIRST_ITERATIONS, ECC_CRITERIA[2])
        correlation, _ = cv2.findTransformECC(template, flipped, warp, cv2.MOTION_EUCLIDEAN, rest, None, 3)
        return float(correlation)
    except cv2.error:  # did not converge: as refine, the start's correlation
        return correlation_at(template, flipped, start)


def correlation_at(template: np.ndarray, moving: np.ndarray, warp: np.ndarray) -> float:
    """Correlation of ``template`` with ``moving`` warped by ``warp``."""
    shifted = cv2.warpAffine(moving, warp, template.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    spread = float(template.std() * shifted.std())
    return float(((template - template.mean()) * (shifted - shifted.mean())).mean() / spread) if spread > 0 else 0.0


NOT_MEASURED = {f.name: math.nan for f in Geometry.fields}  # returned as copies


def estimate(lq: np.ndarray, hq: np.ndarray, side: int) -> dict[str, float]:
    small_lq, small_hq = small_pair(lq, hq, side)
    template, moving = structure_only(luma(small_lq)), structure_only(luma(small_hq))
    if template is None or moving is None or min(template.shape) < 16:
        return dict(NOT_MEASURED)
    warp, correlation = fit(template, moving, shift_start(template, moving))
    if correlation < correlation_at(template, moving, IDENTITY):
        # Phase correlation gave a wrong shift (seen on old photos with scratches and dust,
        # snow, heavy blur), and ECC from there fits worse than no move: start again from no move.
        again, reached = fit(template, moving, IDENTITY)
        if reached > correlation:
            warp, correlation = again, reached
    # The mirrored view is aligned once, rigidly: it only has to beat the direct fit clearly.
    flipped = np.ascontiguousarray(moving[:, ::-1])
    mirrored = mirror_correlation(template, flipped, correlation)
    h, w = template.shape
    matrix = warp.astype(np.float64)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    moved = corners @ matrix.T - corners[:, :2]
    centre_moved = matrix @ np.array([w / 2, h / 2, 1]) - np.array([w / 2, h / 2])
    lq_px_per_plane_px = lq.shape[1] / w
    linear = matrix[:, :2]  # the warp maps LQ positions to where the HQ shows them
    return {
        "displacement_px": float(np.hypot(moved[:, 0], moved[:, 1]).max() * lq_px_per_plane_px),
        "mirror_gain": max(0.0, mirrored - correlation),
        "correlation": correlation,
        "shift_x_px": float(centre_moved[0] * lq_px_per_plane_px),
        "shift_y_px": float(centre_moved[1] * lq_px_per_plane_px),
        "scale": float(math.sqrt(abs(np.linalg.det(linear)))),
        # y points down in an image, so this angle is counter-clockwise on screen
        "rotation_deg": math.degrees(math.atan2(linear[0, 1] - linear[1, 0], linear[0, 0] + linear[1, 1])),
    }


@hookimpl
def ggtqc_register_filters(register):
    register(Geometry)
