"""The filter throughput benchmarks' batch, shared by test_filter_throughput.py and lock_contention.py:
16 real photos, HQ 1024x1024 and LQ 512x512 (``planted.mixed``: blur, noise, JPEG)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from benchmarks import planted  # the accuracy benchmark's degradations
from ggtqc.batch import LoadedPair
from ggtqc.pairs import Pair

BATCH = 16
FILTERS = ("ssim", "color", "hallucination", "artifacts", "geometry", "iqa")


def make_pairs() -> list[LoadedPair]:
    rng = np.random.default_rng(0)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for k in range(BATCH):
        photo = photos[k % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - 256), rng.integers(0, photo.shape[1] - 256)
        hq = cv2.resize(photo[y : y + 256, x : x + 256], (1024, 1024), interpolation=cv2.INTER_CUBIC)
        lq = planted.mixed(cv2.resize(hq, (512, 512), interpolation=cv2.INTER_AREA), rng)  # blur, noise, JPEG
        pair = Pair(f"p{k}", Path(f"lq/p{k}.png"), Path(f"hq/p{k}.png"), Path("."))
        out.append(LoadedPair(pair, lq, hq))
    return out
