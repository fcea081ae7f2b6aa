"""The throughput benchmarks' pairs: HQ 1024 px and LQ 512 px of real photos, the LQ degraded by
``planted.mixed`` (blur, noise, JPEG). :func:`make_pairs`, a decoded batch for
test_filter_throughput.py and lock_contention.py; :func:`write_pairs`, a folder of files for
the end-to-end runs (filter_costs.py, ray_engine.py, filter_e2e.sh: ``python -m
benchmarks.throughput_pairs ROOT COUNT [COPIES]``)."""

from __future__ import annotations

import os
import sys
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


def write_pairs(root: Path, count: int, lq_side: int = 512, copies: int = 1) -> list[Pair]:
    """``root/lq/NNNNN.jpg`` and ``root/hq/NNNNN.png`` for ``count`` pairs; each linked in
    ``copies`` times in all (hard links, ``NNNNN-K``), so a long run costs no more generation."""
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(), data.retina()]
    rng = np.random.default_rng(0)
    for side in ("lq", "hq"):
        (root / side).mkdir(parents=True)
    pairs = []
    for i in range(count):
        hq = cv2.resize(photos[i % len(photos)], (1024, 1024), interpolation=cv2.INTER_CUBIC)
        lq = planted.mixed(cv2.resize(hq, (lq_side, lq_side), interpolation=cv2.INTER_AREA), rng)
        lq_path, hq_path = root / "lq" / f"{i:05d}.jpg", root / "hq" / f"{i:05d}.png"
        cv2.imwrite(str(lq_path), np.ascontiguousarray(lq[..., ::-1]))
        cv2.imwrite(str(hq_path), np.ascontiguousarray(hq[..., ::-1]))
        pairs.append(Pair(f"{i:05d}", lq_path, hq_path, root))
        for copy in range(1, copies):  # the same bytes under another pair's name
            os.link(lq_path, root / "lq" / f"{i:05d}-{copy}.jpg")
            os.link(hq_path, root / "hq" / f"{i:05d}-{copy}.png")
    return pairs


if __name__ == "__main__":
    write_pairs(Path(sys.argv[1]), int(sys.argv[2]), copies=int(sys.argv[3]) if len(sys.argv) > 3 else 1)
