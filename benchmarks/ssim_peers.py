"""The SSIM speed benchmarks' batch and peers, shared by test_ssim_speed.py and gpu_sweep.py.

One uint8 LQ/HQ batch of real photos (HQ 1024 px, LQ 512 px, and LQ 256 px for the 4x
cases), the analysis sizes, the reference and the OpenCV loop on uint8 or float32 input,
and each peer library's SSIM called with the settings that reproduce ``ggtqc.kernels.ssim``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from skimage import data
from skimage.metrics import structural_similarity

from ggtqc.kernels.ssim import LUMA

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
