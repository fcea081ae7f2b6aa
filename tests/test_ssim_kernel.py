"""The downsampled SSIM against skimage (the peer library) and a float64 reference."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from tests.helpers import photos
from ggtqc.kernels import downsampled_ssim, downsampled_ssim_terms
from ggtqc.kernels.ssim import RADIUS, _choose, check_inputs, ssim_torch, tile_bounds

LUMA = np.array([0.299, 0.587, 0.114])


def skimage_ssim(lq: np.ndarray, hq: np.ndarray, factor: int, full: bool = False):
    """The definition, spelled out with NumPy and skimage on (H, W, 3) arrays."""
    scale = hq.shape[0] // lq.shape[0]

    def plane(image, block):
        h, w = lq.shape[0] // factor, lq.shape[1] // factor
        crop = image[: h * block, : w * block].astype(np.float64)
        return crop.reshape(h, block, w, block, 3).mean(axis=(1, 3)) @ LUMA

    return structural_similarity(
        plane(lq, factor), plane(hq, factor * scale),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, full=full,
    )  # fmt: skip


def degrade(hq: np.ndarray, scale: int, kind: str, rng) -> np.ndarray:
    h, w = hq.shape[0] // scale, hq.shape[1] // scale
    lq = cv2.resize(hq, (w, h), interpolation=cv2.INTER_AREA)
    if kind == "noise":
        lq = np.clip(lq + rng.normal(0, 12, lq.shape), 0, 255).astype(np.uint8)
    elif kind == "dark":
        lq = (lq * 0.3).astype(np.uint8)
    elif kind == "other":
        lq = cv2.resize(photos()[4], (w, h))
    elif kind == "mirror":
        lq = lq[:, ::-1]
    return np.ascontiguousarray(lq)


def tensors(lq: np.ndarray, hq: np.ndarray):
    return torch.from_numpy(lq).permute(2, 0, 1)[None], torch.from_numpy(hq).permute(2, 0, 1)[None]


# Real photos, odd shapes (no side a multiple of any block), same-size and 2x/3x/4x targets.
CASES = [
    (0, (512, 512), 2, 2, "noise"),
    (1, (399, 601), 1, 2, "dark"),
    (2, (301, 451), 1, 3, "other"),
    (3, (427, 640), 1, 4, "mirror"),
    (5, (255, 383), 3, 1, "noise"),
    (1, (199, 301), 4, 2, "none"),
]


@pytest.mark.parametrize("photo,size,scale,factor,kind", CASES)
@pytest.mark.parametrize("impl,layout", [("opencv", "channels_last"), ("opencv", "nchw"), ("torch", "channels_last")])
def test_matches_skimage_on_real_photos(photo, size, scale, factor, kind, impl, layout):
    rng = np.random.default_rng(photo)
    hq = cv2.resize(photos()[photo], (size[1], size[0]), interpolation=cv2.INTER_AREA)
    lq = degrade(hq, scale, kind, rng)
    hq = hq[: lq.shape[0] * scale, : lq.shape[1] * scale]
    expected = skimage_ssim(lq, hq, factor)
    lq_t, hq_t = tensors(lq, hq)  # channels-last memory: HWC arrays seen as [1, 3, H, W]
    if layout == "nchw":  # torch's default layout: three contiguous planes per image
        lq_t, hq_t = lq_t.contiguous(), hq_t.contiguous()
        assert lq_t.is_contiguous() and not lq_t.permute(0, 2, 3, 1).is_contiguous()
    got = downsampled_ssim(lq_t, hq_t, factor, impl=impl)
    assert got.dtype == torch.float32 and got.shape == (1,)
    assert abs(got.item() - expected) < 1e-4, (got.item(), expected)


@pytest.mark.parametrize("photo,size,scale,factor,kind", CASES[:4])
@pytest.mark.parametrize(
    "impl,layout,dtype",
    [
        ("opencv", "channels_last", torch.float32),
        ("opencv", "nchw", torch.float32),
        ("opencv", "nchw", torch.float64),
        ("torch", "channels_last", torch.float32),
    ],
)
def test_float_input_scores_as_its_uint8_original(photo, size, scale, factor, kind, impl, layout, dtype):
    # Floats are on the 0..1 scale: a batch divided by 255 must score as the batch itself.
    rng = np.random.default_rng(photo)
    hq = cv2.resize(photos()[photo], (size[1], size[0]), interpolation=cv2.INTER_AREA)
    lq = degrade(hq, scale, kind, rng)
    hq = hq[: lq.shape[0] * scale, : lq.shape[1] * scale]
    lq_t, hq_t = tensors(lq, hq)
    lq_f, hq_f = lq_t.to(dtype) / 255, hq_t.to(dtype) / 255
    if layout == "nchw":
        lq_f, hq_f = lq_f.contiguous(), hq_f.contiguous()
    else:
        assert lq_f.permute(0, 2, 3, 1).is_contiguous()
    expected = downsampled_ssim_terms(lq_t, hq_t, factor, grid=4, impl="torch")
    got = downsampled_ssim_terms(lq_f, hq_f, factor, grid=4, impl=impl)
    assert abs(got.ssim.item() - skimage_ssim(lq, hq, factor)) < 1e-4
    np.testing.assert_allclose(got.ssim.numpy(), expected.ssim.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.structure_tiles.numpy(), expected.structure_tiles.numpy(), atol=1e-4)


def test_cases_span_the_range_of_scores():
    # The comparison above is only meaningful if the cases are not all near 1.
    scores = []
    for photo, size, scale, factor, kind in CASES:
        hq = cv2.resize(photos()[photo], (size[1], size[0]), interpolation=cv2.INTER_AREA)
        lq = degrade(hq, scale, kind, np.random.default_rng(photo))
        scores.append(skimage_ssim(lq, hq[: lq.shape[0] * scale, : lq.shape[1] * scale], factor))
    assert min(scores) < 0.3 and max(scores) > 0.9


def test_float64_reference_equals_skimage_exactly():
    hq = photos()[2]
    lq = degrade(hq, 1, "noise", np.random.default_rng(0))
    lq_t, hq_t = tensors(lq, hq)
    result = ssim_torch(lq_t, hq_t, check_inputs(lq_t, hq_t, 2, None), dtype=torch.float64)
    assert abs(result.ssim.item() - skimage_ssim(lq, hq, 2)) < 1e-6


@pytest.mark.parametrize("impl", ["opencv", "torch"])
def test_tiles_match_skimage_map_and_structure_matches_reference(impl):
    hq = cv2.resize(photos()[0], (333, 301), interpolation=cv2.INTER_AREA)
    lq = degrade(hq, 1, "noise", np.random.default_rng(1))
    lq[100:200, 150:250] = 0  # a removed region: one corner of the grid must score low
    _, full_map = skimage_ssim(lq, hq, 1, full=True)
    valid = full_map[RADIUS:-RADIUS, RADIUS:-RADIUS]
    rows, cols = tile_bounds(valid.shape[0], 4), tile_bounds(valid.shape[1], 4)
    expected = np.array([[valid[rows[i] : rows[i + 1], cols[j] : cols[j + 1]].mean() for j in range(4)] for i in range(4)])
    lq_t, hq_t = tensors(lq, hq)
    got = downsampled_ssim_terms(lq_t, hq_t, 1, grid=4, impl=impl)
    np.testing.assert_allclose(got.ssim_tiles[0].numpy(), expected, atol=1e-4)
    assert np.unravel_index(expected.argmin(), expected.shape) in {(1, 2), (2, 2), (1, 1), (2, 1)}
    reference = ssim_torch(lq_t, hq_t, check_inputs(lq_t, hq_t, 1, 4), dtype=torch.float64)
    # The structure term divides by sigma_x * sigma_y: in flat tiles float32 moments move it
    # a little more than SSIM, still far below any threshold's resolution.
    np.testing.assert_allclose(got.structure.numpy(), reference.structure.numpy(), atol=1e-4)
    np.testing.assert_allclose(got.structure_tiles.numpy(), reference.structure_tiles.numpy(), atol=5e-4)


def test_structure_ignores_brightness_and_contrast_changes_that_ssim_punishes():
    hq = photos()[1]
    lq = (hq.astype(np.float64) * 0.25 + 10).astype(np.uint8)  # a dark, flat version of the same content
    result = downsampled_ssim_terms(*tensors(lq, hq), 2)
    assert result.ssim.item() < 0.6
    assert result.structure.item() > 0.95


# Triton runs on a GPU where there is one, else through its interpreter (tiny shapes).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TRITON_CASES = [
    ((40, 52), 1, 1, None),
    ((37, 29), 2, 1, 2),
    ((45, 61), 1, 3, 3),
    ((150, 70), 1, 2, 2),  # more than one part per tile
]


@pytest.mark.parametrize("size,scale,factor,grid", TRITON_CASES)
def test_triton_kernel_matches_float64_reference(size, scale, factor, grid):
    rng = np.random.default_rng(size[0])
    photo = photos()[size[0] % 4]
    y, x = rng.integers(0, 100, 2)
    hq = np.stack([photo[y : y + size[0] * scale, x : x + size[1] * scale]] * 2)
    lq = np.stack([degrade(h, scale, kind, rng) for h, kind in zip(hq, ["noise", "mirror"])])
    lq_t, hq_t = torch.from_numpy(lq).permute(0, 3, 1, 2), torch.from_numpy(hq).permute(0, 3, 1, 2)
    reference = ssim_torch(lq_t, hq_t, check_inputs(lq_t, hq_t, factor, grid), dtype=torch.float64)
    got = downsampled_ssim_terms(lq_t.to(DEVICE), hq_t.to(DEVICE), factor, grid=grid, impl="triton")
    got = dataclasses.replace(got, **{k: v.cpu() for k, v in vars(got).items() if v is not None})
    np.testing.assert_allclose(got.ssim.numpy(), reference.ssim.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.structure.numpy(), reference.structure.numpy(), atol=1e-5)
    if grid:
        np.testing.assert_allclose(got.ssim_tiles.numpy(), reference.ssim_tiles.numpy(), atol=1e-5)
        np.testing.assert_allclose(got.structure_tiles.numpy(), reference.structure_tiles.numpy(), atol=1e-5)
    # The same call gives the same bits (no atomics); NCHW-contiguous and channels-last
    # inputs the same numbers (on a GPU each layout compiles its own kernel, whose sums may
    # round differently in the last bit).
    repeat = downsampled_ssim_terms(lq_t.to(DEVICE), hq_t.to(DEVICE), factor, grid=grid, impl="triton")
    assert torch.equal(repeat.ssim.cpu(), got.ssim) and torch.equal(repeat.structure.cpu(), got.structure)
    again = downsampled_ssim_terms(lq_t.to(DEVICE).contiguous(), hq_t.to(DEVICE).contiguous(), factor, grid=grid, impl="triton")
    np.testing.assert_allclose(again.ssim.cpu().numpy(), got.ssim.numpy(), rtol=0, atol=1e-6)
    # Floats (0..1) go in as their uint8 originals.
    floats = downsampled_ssim_terms(lq_t.to(DEVICE) / 255, hq_t.to(DEVICE) / 255, factor, grid=grid, impl="triton")
    np.testing.assert_allclose(floats.ssim.cpu().numpy(), got.ssim.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("impl", ["opencv", "triton", "torch"])
def test_batched_equals_one_by_one(impl):
    rng = np.random.default_rng(7)
    hq = np.stack([cv2.resize(p, (64, 48)) for p in photos()[:4]])
    lq = np.stack([degrade(h, 2, "noise", rng) for h in hq])
    device = DEVICE if impl == "triton" else torch.device("cpu")
    lq_t = torch.from_numpy(lq).permute(0, 3, 1, 2).to(device)
    hq_t = torch.from_numpy(hq).permute(0, 3, 1, 2).to(device)
    batched = downsampled_ssim_terms(lq_t, hq_t, 1, grid=2, impl=impl)
    for i in range(4):
        single = downsampled_ssim_terms(lq_t[i : i + 1], hq_t[i : i + 1], 1, grid=2, impl=impl)
        assert torch.equal(single.ssim, batched.ssim[i : i + 1])
        assert torch.equal(single.ssim_tiles, batched.ssim_tiles[i : i + 1])


def test_input_errors_say_what_is_wrong():
    lq = torch.zeros(1, 3, 40, 40, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8 or floating-point"):
        downsampled_ssim(lq.to(torch.int16), lq, 1)
    with pytest.raises(ValueError, match="not an integer multiple"):
        downsampled_ssim(lq, torch.zeros(1, 3, 60, 60, dtype=torch.uint8), 1)
    with pytest.raises(ValueError, match="smaller than the 11-px window"):
        downsampled_ssim(lq, lq, 4)
    with pytest.raises(ValueError, match="grid must be between 1 and 30"):
        downsampled_ssim_terms(lq, lq, 1, grid=31)
    with pytest.raises(ValueError, match="unknown SSIM implementation"):
        downsampled_ssim(lq, lq, 1, impl="cuda")


def test_dispatch_auto_and_explicit(monkeypatch):
    cpu = torch.device("cpu")
    assert _choose(None, cpu) == "opencv"
    assert _choose("auto", torch.device("cuda")) == "triton"
    monkeypatch.setenv("GGTQC_SSIM_IMPL", "torch")
    assert _choose(None, cpu) == "torch"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # set only where there is no GPU
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        _choose("triton", cpu)
    with pytest.raises(RuntimeError, match="runs on CPU tensors"):
        _choose("opencv", torch.device("cuda"))


def test_auto_falls_back_to_torch_when_triton_fails_but_explicit_raises(monkeypatch):
    import ggtqc.kernels.ssim as ssim
    import ggtqc.kernels.ssim_triton as ssim_triton

    def broken(*args):
        raise RuntimeError("PTX compilation failed")

    monkeypatch.setattr(ssim_triton, "ssim_triton", broken)
    monkeypatch.setattr(ssim, "_TRITON_BROKEN", [])
    monkeypatch.setattr(ssim, "_choose", lambda impl, device: "triton")  # as on a CUDA machine
    lq = torch.from_numpy(np.ascontiguousarray(cv2.resize(photos()[0], (40, 40)))).permute(2, 0, 1)[None]
    with pytest.warns(UserWarning, match="PTX compilation failed"):
        fallback = downsampled_ssim(lq, lq, 1)
    assert fallback.item() == pytest.approx(1.0) and ssim._TRITON_BROKEN
    with pytest.raises(RuntimeError, match="PTX"):
        downsampled_ssim(lq, lq, 1, impl="triton")
