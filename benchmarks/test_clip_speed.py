"""Throughput of the clip filter's image embedding (ViT-B-32, random weights: speed only).

    pytest benchmarks/test_clip_speed.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

BATCH = 32
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def clip_filter(tmp_path_factory):
    import open_clip

    from ggtqc.plugins.clip import Clip

    checkpoint = tmp_path_factory.mktemp("clip") / "vit-b-32-random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
    f = Clip(checkpoint=str(checkpoint))
    f.setup(torch.device("cuda" if CUDA else "cpu"))
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


def test_clip_embedding_throughput(benchmark, clip_filter, images):
    benchmark.group = "clip ViT-B-32 embedding"

    def embed():
        out = clip_filter.embed(images)
        if CUDA:
            torch.cuda.synchronize()
        return out

    benchmark.pedantic(embed, rounds=3, warmup_rounds=1, iterations=1)
    benchmark.extra_info["images_per_second"] = BATCH / benchmark.stats.stats.mean
    benchmark.extra_info["device"] = "cuda" if CUDA else "cpu"
