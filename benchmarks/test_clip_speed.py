"""Throughput of the clip filter's image embedding (ViT-B-32, random weights: speed only).

``threads``: the pool the preprocessing (PIL resizing, ~1 ms of CPU per view) runs on, as
the host's ``--workers`` threads give it; 1 runs it on the calling thread.

    pytest benchmarks/test_clip_speed.py --benchmark-only
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from benchmarks.timing import mean_seconds, synchronised

BATCH = 32
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def clip_filter(tmp_path_factory):
    import open_clip

    from ggtqc.plugins.clip import Clip

    checkpoint = tmp_path_factory.mktemp("clip") / "vit-b-32-random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
    f = Clip(checkpoint=str(checkpoint))
    f.setup(torch.device(DEVICE))
    return f


@pytest.fixture(scope="module")
def images():
    photo = data.astronaut()
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(BATCH):
        y, x = rng.integers(0, 200, 2)
        crops.append(Image.fromarray(np.ascontiguousarray(photo[y : y + 300, x : x + 300])))
    return crops


@pytest.mark.parametrize("threads", sorted({1, os.cpu_count() or 1}))
def test_clip_embedding_throughput(benchmark, clip_filter, images, threads):
    benchmark.group = "clip ViT-B-32 embedding"
    with ThreadPoolExecutor(threads) as executor:

        embed = synchronised(DEVICE, lambda: clip_filter.embed(images, executor.map if threads > 1 else map))
        benchmark.pedantic(embed, rounds=3, warmup_rounds=1, iterations=1)
    if (seconds := mean_seconds(benchmark)) is not None:
        benchmark.extra_info["images_per_second"] = BATCH / seconds
    benchmark.extra_info["device"] = DEVICE
