"""Downsampled SSIM, side by side with the libraries a user would otherwise pick.

Every case starts from the same LQ/HQ batch (real photos; HQ 1024 px, LQ 512 px, or LQ
256 px in the ``lq256`` cases: a 4x pair analysed at the LQ's own 256 px) and ends with one
score per pair, pooling and luma included, so the times compare what a user gets. Ours is
timed on uint8 and on float32 (0..1) input, each in channels-last memory (as decoded) and
NCHW-contiguous (torch's default); the OpenCV loop on uint8 and float32 HWC arrays. Each peer is called with the settings that reproduce the definition in
``ggtqc.kernels.ssim``; its deviation from skimage is recorded in ``extra_info`` (two
peers cannot be configured to match: torchmetrics averages over a padded map, pyiqa
quantises its input).

    pytest benchmarks/ --benchmark-only --benchmark-json=benchmarks/results/<machine>.json
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.ssim_peers import BATCH, CASES, CUDA, HQ, HQ_SIDE, opencv_loop_pair, peer, skimage_pair, skimage_reference, torch_planes
from benchmarks.timing import mean_seconds, synchronised
from ggtqc.kernels import downsampled_ssim


def run(benchmark, fn, case, rounds=5):
    scores = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    scores = np.asarray(torch.as_tensor(scores).detach().cpu().double()).reshape(-1)
    benchmark.extra_info["pairs"] = BATCH
    if (seconds := mean_seconds(benchmark)) is not None:
        benchmark.extra_info["ms_per_pair"] = seconds * 1e3 / BATCH
    benchmark.extra_info["max_abs_diff_vs_skimage"] = float(np.abs(scores - skimage_reference(case)).max())


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request, benchmark):
    benchmark.group = f"hq{HQ_SIDE} {request.param}"
    return request.param


def inputs(case: str, dtype: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The case's LQ and HQ batches as ``dtype`` (float32: 0..1), and its factor."""
    lq, factor = CASES[case]
    if dtype == "float32":
        return lq.astype(np.float32) / 255, HQ.astype(np.float32) / 255, factor
    return lq, HQ, factor


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_ggtqc_opencv(benchmark, case, layout, dtype):
    lq_np, hq_np, factor = inputs(case, dtype)
    lq = torch.from_numpy(lq_np).permute(0, 3, 1, 2)  # channels-last memory, as decoded
    hq = torch.from_numpy(hq_np).permute(0, 3, 1, 2)
    if layout == "nchw":  # torch's default layout, as a torchvision decoder or a DataLoader gives it
        lq, hq = lq.contiguous(), hq.contiguous()
    run(benchmark, lambda: downsampled_ssim(lq, hq, factor, impl="opencv"), case)


def test_ggtqc_torch_cpu(benchmark, case):
    lq_np, _, factor = inputs(case, "uint8")
    lq, hq = torch.from_numpy(lq_np).permute(0, 3, 1, 2), torch.from_numpy(HQ).permute(0, 3, 1, 2)
    run(benchmark, lambda: downsampled_ssim(lq, hq, factor, impl="torch"), case, rounds=2)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_opencv_loop(benchmark, case, dtype):
    lq, hq, factor = inputs(case, dtype)
    run(benchmark, lambda: [opencv_loop_pair(lq[i], hq[i], factor) for i in range(BATCH)], case)


def test_skimage(benchmark, case):
    lq, hq, factor = inputs(case, "uint8")
    run(benchmark, lambda: [skimage_pair(lq[i], hq[i], factor) for i in range(BATCH)], case)


@pytest.mark.parametrize("name", ["pytorch_msssim", "piq", "kornia", "torchmetrics", "pyiqa"])
def test_torch_peer_cpu(benchmark, case, name):
    metric = peer(name)
    lq_np, _, factor = inputs(case, "uint8")
    lq, hq = torch.from_numpy(lq_np).permute(0, 3, 1, 2), torch.from_numpy(HQ).permute(0, 3, 1, 2)

    def fn():
        with torch.no_grad():
            return metric(*torch_planes(lq, hq, factor))

    run(benchmark, fn, case, rounds=2)


gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def cuda_batch(case: str):
    lq = torch.from_numpy(CASES[case][0]).cuda().permute(0, 3, 1, 2)
    hq = torch.from_numpy(HQ).cuda().permute(0, 3, 1, 2)
    return lq, hq


@gpu
@pytest.mark.parametrize("impl", ["triton", "torch"])
def test_ggtqc_cuda(benchmark, case, impl):
    lq, hq = cuda_batch(case)
    factor = CASES[case][1]
    run(benchmark, synchronised("cuda", lambda: downsampled_ssim(lq, hq, factor, impl=impl)), case, rounds=20)


@gpu
@pytest.mark.parametrize("name", ["pytorch_msssim", "piq", "kornia", "torchmetrics"])
def test_torch_peer_cuda(benchmark, case, name):
    metric = peer(name)
    lq, hq = cuda_batch(case)
    factor = CASES[case][1]

    def fn():
        with torch.no_grad():
            return metric(*torch_planes(lq, hq, factor))

    run(benchmark, synchronised("cuda", fn), case, rounds=20)
