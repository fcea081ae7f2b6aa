"""The iqa filter's PIQE against a user's own pyiqa loop, per pair, on the CPU and a GPU.

    pytest benchmarks/test_iqa_speed.py --benchmark-only

32 real photos, HQ 1024x1024 and LQ 512x512 (``planted.mixed``). Each case goes from the
uint8 arrays to both images' PIQE, area-resized to 512 px as the filter does:

- ``ggtqc``: the filter's ``score`` (CPU: pairs on a thread pool of all cores; GPU: the
  pairs' views stacked into one call per side);
- ``pyiqa_loop``: ``pyiqa.create_metric("piqe")`` called on one image at a time, the loop
  a user would write.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from ggtqc.batch import Batch
from ggtqc.plugins.iqa import Iqa

from benchmarks import planted  # the accuracy benchmark's degradations
from benchmarks.timing import mean_seconds, synchronised

BATCH = 32
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def pairs():
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    hq = [cv2.resize(photos[i % 4][i:], (1024, 1024), interpolation=cv2.INTER_CUBIC) for i in range(BATCH)]
    lq = [planted.mixed(cv2.resize(h, (512, 512), interpolation=cv2.INTER_AREA), rng) for h in hq]
    return lq, hq


@pytest.mark.parametrize("device", DEVICES)
def test_ggtqc(benchmark, pairs, device):
    benchmark.group = f"iqa piqe {device}"
    lq, hq = pairs
    f = Iqa()
    f.setup(torch.device(device))
    with ThreadPoolExecutor(os.cpu_count() or 1) as executor:
        batch = Batch([str(i) for i in range(BATCH)], lq, hq, torch.device(device), executor=executor)
        out = benchmark.pedantic(synchronised(device, lambda: f.score(batch)), rounds=3, warmup_rounds=1)
    if (seconds := mean_seconds(benchmark)) is not None:
        benchmark.extra_info["ms_per_pair"] = 1000 * seconds / BATCH
    benchmark.extra_info["piqe_hq_mean"] = float(np.mean(out["piqe_hq"]))


@pytest.mark.parametrize("device", DEVICES)
def test_pyiqa_loop(benchmark, pairs, device):
    import pyiqa

    benchmark.group = f"iqa piqe {device}"
    lq, hq = pairs
    metric = pyiqa.create_metric("piqe", device=device)

    def tensor(image):
        resized = cv2.resize(image, (512, 512), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(resized).permute(2, 0, 1)[None].float().div(255).to(device)

    def loop():
        with torch.no_grad():
            return [(metric(tensor(h)).item(), metric(tensor(q)).item()) for q, h in zip(lq, hq)]

    out = benchmark.pedantic(synchronised(device, loop), rounds=3, warmup_rounds=1)
    if (seconds := mean_seconds(benchmark)) is not None:
        benchmark.extra_info["ms_per_pair"] = 1000 * seconds / BATCH
    benchmark.extra_info["piqe_hq_mean"] = float(np.mean([h for h, _ in out]))
