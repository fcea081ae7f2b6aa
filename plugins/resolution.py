"""``resolution``: sizes and shapes that make a usable training pair.

Scores come from image sizes alone:
- ``lq_short_side``, ``hq_short_side``: shorter side in pixels (too small to train on?);
- ``hq_long_side``: longer side of HQ (absurdly large outputs);
- ``scale``: HQ size over LQ size on the tighter axis; below 1 the HQ is smaller than LQ;
- ``aspect_error``: ``|ln(aspect HQ / aspect LQ)|``, 0 when the shapes match; 0.02 is
  about a 2% stretch or crop;
- ``scale_error``: relative distance of ``scale`` from ``expected_scale`` when that option
  is set (2 for 2x super-resolution, say); not measured otherwise.

Sizes are all it reads, so one implementation serves every device: nothing is uploaded.
"""

from __future__ import annotations

import math

from ggtqc import Field, PairFilter, hookimpl


class Resolution(PairFilter):
    name = "resolution"
    version = "1"
    cost = 0.0
    fields = (
        Field("lq_short_side", "higher", 64, "shorter LQ side, px", margin=0),
        Field("hq_short_side", "higher", 256, "shorter HQ side, px", margin=0),
        Field("hq_long_side", "lower", 8192, "longer HQ side, px", margin=0),
        Field("scale", "higher", 1.0, "HQ/LQ size ratio on the tighter axis", margin=0),
        Field("aspect_error", "lower", 0.02, "|ln(aspect HQ / aspect LQ)|", margin=0),
        Field("scale_error", "lower", 0.01, "|scale - expected_scale| / expected_scale", margin=0),
    )
    options = {"expected_scale": 0.0}

    def score_pair(self, lq, hq):
        expected = float(self.settings["expected_scale"])
        (lh, lw), (hh, hw) = lq.shape[:2], hq.shape[:2]
        scale = min(hh / lh, hw / lw)
        return {
            "lq_short_side": min(lh, lw),
            "hq_short_side": min(hh, hw),
            "hq_long_side": max(hh, hw),
            "scale": scale,
            "aspect_error": abs(math.log((hw / hh) / (lw / lh))),
            "scale_error": abs(scale - expected) / expected if expected > 0 else math.nan,
        }


@hookimpl
def ggtqc_register_filters(register):
    register(Resolution)
