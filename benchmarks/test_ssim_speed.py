"""Downsampled SSIM, side by side with the libraries a user would otherwise pick.

Every case starts from the same uint8 LQ/HQ batch (real photos; HQ 1024 px, LQ 512 px)
and ends with one score per pair, pooling and luma included, so the times compare what a
user gets. Each peer is called with the settings that reproduce the definition in
``ggtqc.kernels.ssim``; its deviation from skimage is recorded in ``extra_info`` (two
peers cannot be configured to match: torchmetrics averages over a padded map, pyiqa
quantises its input).

    pytest benchmarks/ --benchmark-only --benchmark-json=benchmarks/results/<machine>.json
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.ssim_peers import (
    BATCH, CUDA, FACTORS, HQ, HQ_SIDE, LQ, opencv_loop_pair, peer, skimage_pair, skimage_reference, torch_planes,
)  # fmt: skip
from benchmarks.timing import synchronised
from ggtqc.kernels import downsampled_ssim


def run(benchmark, fn, factor, rounds=5):
    scores = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    scores = np.asarray(torch.as_tensor(scores).detach().cpu().double()).reshape(-1)
    benchmark.extra_info["pairs"] = BATCH
    if benchmark.stats is not None:  # None under --benchmark-disable, a smoke run of every case
        benchmark.extra_info["ms_per_pair"] = benchmark.stats.stats.mean * 1e3 / BATCH
    benchmark.extra_info["max_abs_diff_vs_skimage"] = float(np.abs(scores - skimage_reference(factor)).max())


@pytest.fixture(params=list(FACTORS), ids=list(FACTORS))
def factor(request, benchmark):
    benchmark.group = f"hq{HQ_SIDE} {request.param}"
    return FACTORS[request.param]


@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_ggtqc_opencv(benchmark, factor, layout):
    lq = torch.from_numpy(LQ).permute(0, 3, 1, 2)  # channels-last memory, as decoded
    hq = torch.from_numpy(HQ).permute(0, 3, 1, 2)
    if layout == "nchw":  # torch's default layout, as a torchvision decoder or a DataLoader gives it
        lq, hq = lq.contiguous(), hq.contiguous()
    run(benchmark, lambda: downsampled_ssim(lq, hq, factor, impl="opencv"), factor)


def test_ggtqc_torch_cpu(benchmark, factor):
    lq, hq = torch.from_numpy(LQ).permute(0, 3, 1, 2), torch.from_numpy(HQ).permute(0, 3, 1, 2)
    run(benchmark, lambda: downsampled_ssim(lq, hq, factor, impl="torch"), factor, rounds=2)


def test_opencv_loop(benchmark, factor):
    run(benchmark, lambda: [opencv_loop_pair(LQ[i], HQ[i], factor) for i in range(BATCH)], factor)


def test_skimage(benchmark, factor):
    run(benchmark, lambda: [skimage_pair(LQ[i], HQ[i], factor) for i in range(BATCH)], factor)


@pytest.mark.parametrize("name", ["pytorch_msssim", "piq", "kornia", "torchmetrics", "pyiqa"])
def test_torch_peer_cpu(benchmark, factor, name):
    metric = peer(name)
    lq, hq = torch.from_numpy(LQ).permute(0, 3, 1, 2), torch.from_numpy(HQ).permute(0, 3, 1, 2)

    def fn():
        with torch.no_grad():
            return metric(*torch_planes(lq, hq, factor))

    run(benchmark, fn, factor, rounds=2)


gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def cuda_batch():
    lq = torch.from_numpy(LQ).cuda().permute(0, 3, 1, 2)
    hq = torch.from_numpy(HQ).cuda().permute(0, 3, 1, 2)
    return lq, hq


@gpu
@pytest.mark.parametrize("impl", ["triton", "torch"])
def test_ggtqc_cuda(benchmark, factor, impl):
    lq, hq = cuda_batch()
    run(benchmark, synchronised("cuda", lambda: downsampled_ssim(lq, hq, factor, impl=impl)), factor, rounds=20)


@gpu
@pytest.mark.parametrize("name", ["pytorch_msssim", "piq", "kornia", "torchmetrics"])
def test_torch_peer_cuda(benchmark, factor, name):
    metric = peer(name)
    lq, hq = cuda_batch()

    def fn():
        with torch.no_grad():
            return metric(*torch_planes(lq, hq, factor))

    run(benchmark, synchronised("cuda", fn), factor, rounds=20)
