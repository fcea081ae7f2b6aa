"""``hallucination``: where does the target's structure depart from its source's?

Both images are area-pooled to a common low resolution and compared by their local
structure in 1.5-px Gaussian windows, blind to brightness and contrast:

- brightness: local means are removed (only local variances and covariance are used);
- contrast (haze, low light): the LQ's local variance is scaled by ``a**2``, the ratio of
  HQ to LQ structure energy over a quarter of the frame, so a depth-varying gain is fine;
- noise: a stabiliser proportional to the LQ's noise variance (estimated from its
  Laplacian) and to the image's mean structure energy keeps flat areas at zero.

Two one-sided maps then say which structure has no counterpart on the other side:

- *added*: HQ variance that the LQ does not explain, ``v_hq - cov**2 / v_lq``, over the
  total energy (analysed at ``added_side``, 96 px): objects, texture or text that the
  source never had;
- *removed*: LQ variance that the HQ does not explain (at ``removed_side``, 64 px), after
  a morphological open-close of both images (at 4x that size) by 4% of the frame, so that particles and
  streaks smaller than that (rain, snow, dust, scratches: what restoration removes) do
  not count as content.

Each map is averaged over regions of ~5% of the frame; the scores are the worst region:

- ``added``, ``removed``: 0 where both agree, ~1 where one side has structure the other
  lacks entirely. ``added`` (default 0.4) sits above what honest restorations of the six
  degradation groups reach on the planted-fault benchmark. ``removed`` (default 0.75) only
  catches large removals: heavy snow that a restoration legitimately clears, or noise
  around thin structures, reaches 0.75
  too, so the subtler removals are left to the ``ssim`` filter and to review.

The filter returns the larger of the two maps as a heatmap of where the pair disagrees.
"""

from __future__ import annotations

import cv2
import numpy as np

from ggtqc import Field, Filter, Scores, hookimpl
from ggtqc.planes import luma, noise_sigma, particles_removed, small_pair

WINDOW_SIGMA = 1.5
REGION = 0.05  # averaging radius of the worst-region score, as a share of the long side


class Hallucination(Filter):
    name = "hallucination"
    version = "1"
    cost = 5.0
    fields = (
        Field("added", "lower", 0.4, "worst region of HQ structure the LQ does not explain"),
        Field("removed", "lower", 0.75, "worst region of LQ structure (beyond particles) the HQ does not explain"),
    )
    options = {"added_side": 96, "removed_side": 64}

    def score(self, batch):
        results = batch.map(self.score_pair, batch.lq, batch.hq)
        added, removed, heatmaps = zip(*results) if results else ((), (), ())
        return Scores({"added": list(added), "removed": list(removed)}, list(heatmaps))

    def score_pair(self, lq: np.ndarray, hq: np.ndarray) -> tuple[float, float, np.ndarray]:
        """``added``, ``removed`` and the heatmap of one pair."""
        added_map = one_sided_maps(lq, hq, int(self.settings["added_side"]))[0]
        removed_side = int(self.settings["removed_side"])
        removed_map = one_sided_maps(*particles_removed(lq, hq, 4 * removed_side), removed_side)[1]
        size = added_map.shape[::-1]
        heatmap = np.maximum(added_map, cv2.resize(removed_map, size, interpolation=cv2.INTER_LINEAR))
        return float(added_map.max()), float(removed_map.max()), heatmap


def _blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def one_sided_maps(lq: np.ndarray, hq: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Region-averaged *added* and *removed* maps at the LQ's shape, long side ``side``."""
    small_lq, small_hq = small_pair(lq, hq, side)
    x, y = _blur(luma(small_lq), 0.7), _blur(luma(small_hq), 0.7)
    mx, my = _blur(x, WINDOW_SIGMA), _blur(y, WINDOW_SIGMA)
    vx = np.maximum(_blur(x * x, WINDOW_SIGMA) - mx * mx, 0)
    vy = np.maximum(_blur(y * y, WINDOW_SIGMA) - my * my, 0)
    cov = _blur(x * y, WINDOW_SIGMA) - mx * my
    quarter = 0.25 * max(x.shape)
    gain2 = np.clip(_blur(vy, quarter) / np.maximum(_blur(vx, quarter), 1e-3), 0.25, 64.0)
    stabiliser = 0.1 * float(vy.mean()) + 4.0 * float(np.median(gain2)) * noise_sigma(x) ** 2 + 1.0
    total = vy + gain2 * vx + stabiliser
    added = np.maximum(vy - cov * cov / np.maximum(vx, 1e-3), 0) / total
    removed = gain2 * np.maximum(vx - cov * cov / np.maximum(vy, 1e-3), 0) / total
    radius = REGION * max(x.shape)
    return _blur(added, radius), _blur(removed, radius)


@hookimpl
def ggtqc_register_filters(register):
    register(Hallucination)
