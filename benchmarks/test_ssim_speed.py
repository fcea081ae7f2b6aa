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

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from skimage.metrics import structural_similarity

from ggtqc.kernels import downsampled_ssim
from ggtqc.kernels.ssim import LUMA

sys.path.insert(0, str(Path(__file__).parent))
from timing import synchronised  # noqa: E402

BATCH = 8
HQ_SIDE = 1024
SCALE = 2
# Analysis resolution: the pooled planes are 256 px (factor 2) or 512 px (factor 1).
FACTORS = {"at256": 2, "at512": 1}
LQ4_SIDE = HQ_SIDE // 4  # the lq256 cases: a 4x pair, analysed at the LQ's 256 px
CUDA = torch.cuda.is_available()
LUMA_NP = np.asarray([[*LUMA]], np.float32)


def make_batch() -> tuple[np.ndarray, np.ndarray]:
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(), data.retina()]
    rng = np.random.default_rng(0)
    hq = np.stack([cv2.resize(photos[i % len(photos)], (HQ_SIDE, HQ_SIDE), interpolation=cv2.INTER_CUBIC) for i in range(BATCH)])
    side = HQ_SIDE // SCALE
    lq = np.stack(
        [np.clip(cv2.resize(h, (side, side), interpolation=cv2.INTER_AREA) + rng.normal(0, 6, (side, side, 3)), 0, 255) for h in hq]
    ).astype(np.uint8)
    return lq, hq


LQ, HQ = make_batch()
LQ4 = np.stack([cv2.resize(lq, (LQ4_SIDE, LQ4_SIDE), interpolation=cv2.INTER_AREA) for lq in LQ])
# name -> (LQ batch, pooling factor of the LQ)
CASES = {"at256": (LQ, 2), "at512": (LQ, 1), "lq256_at256": (LQ4, 1)}
_REFERENCES: dict[str, np.ndarray] = {}


def skimage_reference(case: str) -> np.ndarray:
    if case not in _REFERENCES:
        lq, factor = CASES[case]
        _REFERENCES[case] = np.array([skimage_pair(lq[i], HQ[i], factor) for i in range(BATCH)])
    return _REFERENCES[case]


def numpy_planes(lq: np.ndarray, hq: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact area pooling and luma the way a careful OpenCV user writes it (uint8, or
    float32 0..1 arrays, brought to the 0..255 scale on the small planes)."""
    size = (lq.shape[1] // factor, lq.shape[0] // factor)
    luma = LUMA_NP if lq.dtype == np.uint8 else LUMA_NP * 255
    x = cv2.transform(cv2.resize(lq.astype(np.float32), size, interpolation=cv2.INTER_AREA), luma)
    y = cv2.transform(cv2.resize(hq.astype(np.float32), size, interpolation=cv2.INTER_AREA), luma)
    return x, y


def skimage_pair(lq, hq, factor):
    x, y = numpy_planes(lq, hq, factor)
    return structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def opencv_loop_pair(lq, hq, factor):
    x, y = numpy_planes(lq, hq, factor)

    def blur(p):
        return cv2.GaussianBlur(p, (11, 11), 1.5)[5:-5, 5:-5]

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean())


def torch_planes(lq: torch.Tensor, hq: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.tensor(LUMA, device=lq.device).view(1, 3, 1, 1)
    x = (F.avg_pool2d(lq.float(), factor) * weights).sum(1, keepdim=True)
    y = (F.avg_pool2d(hq.float(), factor * (hq.shape[-1] // lq.shape[-1])) * weights).sum(1, keepdim=True)
    return x, y


def peer(name: str):
    """The peer's SSIM on two luma batches; each library is imported only when asked for."""
    if name == "pytorch_msssim":
        import pytorch_msssim

        return lambda x, y: pytorch_msssim.ssim(
            x, y, data_range=255, size_average=False, win_size=11, win_sigma=1.5, K=(0.01, 0.03), nonnegative_ssim=False
        )
    if name == "piq":
        import piq

        return lambda x, y: piq.ssim(x, y, kernel_size=11, kernel_sigma=1.5, data_range=255.0, downsample=False, reduction="none")
    if name == "kornia":
        import kornia

        return lambda x, y: kornia.metrics.ssim(x, y, window_size=11, max_val=255.0, padding="valid").mean(dim=(1, 2, 3))
    if name == "torchmetrics":
        import torchmetrics

        return lambda x, y: torchmetrics.functional.structural_similarity_index_measure(
            x, y, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=255.0, reduction="none"
        )
    if name == "pyiqa":
        import pyiqa

        metric = pyiqa.create_metric("ssim", device="cuda" if CUDA else "cpu", test_y_channel=False)
        return lambda x, y: metric(x / 255, y / 255)
    raise ValueError(name)


def run(benchmark, fn, case, rounds=5):
    scores = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    scores = np.asarray(torch.as_tensor(scores).detach().cpu().double()).reshape(-1)
    benchmark.extra_info["pairs"] = BATCH
    if benchmark.stats is not None:  # None under --benchmark-disable, a smoke run of every case
        benchmark.extra_info["ms_per_pair"] = benchmark.stats.stats.mean * 1e3 / BATCH
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
