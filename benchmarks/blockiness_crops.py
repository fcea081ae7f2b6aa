"""``artifacts.blockiness`` on crops of the calibration photos: where honest and blocky targets sit.

Random crops (200-520 px) of the calibration photos at 1x, 2x and 4x; per crop, targets that
must pass (the clean crop, a soft one, a soft one saved as a quality-90 JPEG, the crop as a
quality-95 JPEG) and targets that must not (quality 25; a soft crop at quality 25; at 2x and
4x the LQ compressed at quality 15-35 and upscaled bicubically, its blocks carried as tiles).
Quality 40-80 is printed for reference. Prints min / median / max of the score per case::

    python -m benchmarks.blockiness_crops --crops 12
"""

from __future__ import annotations

from collections import defaultdict

import click
import cv2
import numpy as np

from benchmarks.planted import SPLITS, photo
from ggtqc.planes import luma
from ggtqc.plugins.artifacts import blockiness

MUST_PASS = ("clean", "soft", "soft_q90", "q95")
MUST_FAIL = ("q25", "soft_q25", "tiles")


def jpeg(image: np.ndarray, quality: float) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def targets(hq: np.ndarray, scale: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    soft = cv2.GaussianBlur(hq, (0, 0), 2.5)
    cases = {"clean": hq, "soft": soft, "soft_q90": jpeg(soft, 90), "q95": jpeg(hq, 95), "q80": jpeg(hq, 80),
             "q60": jpeg(hq, 60), "q40": jpeg(hq, 40), "q25": jpeg(hq, 25), "soft_q25": jpeg(soft, 25)}  # fmt: skip
    if scale > 1:
        h, w = hq.shape[:2]
        lq = jpeg(cv2.resize(hq, (w // scale, h // scale), interpolation=cv2.INTER_AREA), rng.uniform(15, 35))
        cases["tiles"] = cv2.resize(lq, (w, h), interpolation=cv2.INTER_CUBIC)
    return cases


@click.command()
@click.option("--crops", default=12, show_default=True, help="Crops per photo.")
@click.option("--seed", default=0, show_default=True)
def main(crops: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    found = defaultdict(list)
    for name in SPLITS["calibration"]:
        image = photo(name)
        for _ in range(crops):
            h, w = (min(int(rng.integers(200, 520)), side) for side in image.shape[:2])
            y, x = int(rng.integers(0, image.shape[0] - h + 1)), int(rng.integers(0, image.shape[1] - w + 1))
            scale = int(rng.choice([1, 2, 4]))
            hq = np.ascontiguousarray(image[y : y + h // scale * scale, x : x + w // scale * scale])
            for case, target in targets(hq, scale, rng).items():
                found[case].append(blockiness(luma(target), scale))
    print("| case | must | crops | min | median | max |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for case, values in found.items():
        must = "pass" if case in MUST_PASS else "fail" if case in MUST_FAIL else ""
        print(f"| {case} | {must} | {len(values)} | {min(values):.2f} | {np.median(values):.2f} | {max(values):.2f} |")


if __name__ == "__main__":
    main()
