"""artifacts: the LQ's block grid carried to HQ scale, new detail at HQ scale, crisp targets that are no
halo; each fault in its own field, against its honest twin."""

import cv2
import numpy as np
import pytest

from examples import make_pairs as degrade  # the sample pairs' degradations
from ggtqc import PairScores, Scores
from ggtqc.batch import Batch
from ggtqc.planes import luma
from ggtqc.plugins.artifacts import (
    MIN_DETAIL,
    SHARPEN_RADII,
    SMOOTH_SOURCE,
    Artifacts,
    change,
    integer_scale,
    least_squares,
    nonzero,
)
from tests.helpers import failing_fields, photos


def artifacts_scores(lq, hq):
    """The artifacts filter's scores of one pair and its note (None when sure)."""
    out = Artifacts().score(Batch(["p"], [np.ascontiguousarray(lq)], [np.ascontiguousarray(hq)]))
    if isinstance(out, Scores):
        return {k: v[0] for k, v in out.values.items()}, out.unsure[0] if out.unsure else None
    return {k: v[0] for k, v in out.items()}, None


def scores(lq, hq):
    return artifacts_scores(lq, hq)[0]


def fails(got):
    return failing_fields(Artifacts, got)


def jpeg(image, quality):
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def usm(image, amount, sigma):
    image = image.astype(np.float32)
    return np.clip(image + amount * (image - cv2.GaussianBlur(image, (0, 0), sigma)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene():
    return cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)  # coffee


def test_integer_scale():
    assert integer_scale(np.zeros((80, 120, 3)), np.zeros((320, 480, 3))) == 4
    assert integer_scale(np.zeros((80, 120, 3)), np.zeros((80, 120, 3))) == 1
    assert integer_scale(np.zeros((80, 120, 3)), np.zeros((320, 400, 3))) == 1  # the sides disagree


@pytest.mark.parametrize("scale", [2, 4])
def test_blockiness_sees_the_lq_grid_carried_to_hq_scale(scene, scale):
    h, w = scene.shape[:2]
    lq = jpeg(cv2.resize(scene, (w // scale, h // scale), interpolation=cv2.INTER_AREA), 15)
    means = lq.astype(np.float32).reshape(h // scale // 8, 8, w // scale // 8, 8, 3).mean(axis=(1, 3))
    tiles = cv2.resize(means, (w, h), interpolation=cv2.INTER_NEAREST) - cv2.resize(means, (w, h), interpolation=cv2.INTER_LINEAR)
    tiled = np.clip(scene + tiles, 0, 255).astype(np.uint8)
    assert "blockiness" in fails(scores(lq, tiled))
    assert "blockiness" not in fails(scores(lq, scene))


def test_blockiness_is_not_fooled_by_a_few_long_edges_on_one_phase(scene):
    banded = cv2.GaussianBlur(scene, (0, 0), 1.0).astype(np.float32)
    banded[[43, 123, 203]] += 90  # three bright lines across the frame, all on one phase of the 8-px grid
    banded = np.clip(banded, 0, 255).astype(np.uint8)
    assert "blockiness" not in fails(scores(banded, banded))
    assert "blockiness" in fails(scores(banded, jpeg(banded, 20)))


def test_blockiness_does_not_see_a_faint_grid_over_flat_content(scene):
    soft = cv2.GaussianBlur(scene, (0, 0), 5.0).astype(np.float32) * 0.4 + 77  # a soft, low-contrast photo
    flat = soft.astype(np.uint8)  # saved below as a good JPEG: a grid in the statistics, invisible to the eye
    assert "blockiness" not in fails(scores(flat, jpeg(flat, 90)))
    assert "blockiness" in fails(scores(flat, jpeg(flat, 25)))


@pytest.mark.parametrize("scale", [2, 4])
def test_change_counts_detail_drawn_at_hq_scale(scene, scale):
    # A barely degraded small source: at its scale a faithful 2x/4x target hardly differs
    # from it, but its new detail lives at HQ scale, where no upscale of the LQ has any.
    h, w = scene.shape[:2]
    lq = jpeg(cv2.resize(scene, (w // scale, h // scale), interpolation=cv2.INTER_AREA), 85)
    assert "change" not in fails(scores(lq, scene))
    for interpolation in (cv2.INTER_CUBIC, cv2.INTER_LANCZOS4):
        upscaled = cv2.resize(lq, (w, h), interpolation=interpolation)
        assert "change" in fails(scores(lq, usm(upscaled, 0.8, scale)))


def test_halo_passes_a_crisp_target_and_catches_strong_sharpening(scene):
    lq = cv2.GaussianBlur(scene, (0, 0), 1.2)
    for amount in (0.3, 0.5, 0.7):
        assert "halo" not in fails(scores(lq, usm(scene, amount, 1.5))), amount
    assert "halo" in fails(scores(lq, usm(scene, 2.5, 2.0)))


def test_a_weak_rim_on_most_edges_is_sent_to_review_and_a_strong_one_rejected():
    rng = np.random.default_rng(0)
    plane = np.full((320, 480), 128, np.float32)
    for _ in range(40):  # flat tiles: every strong edge is a clean step with plateaus
        x, y = int(rng.integers(0, 440)), int(rng.integers(0, 280))
        cv2.rectangle(plane, (x, y), (x + int(rng.integers(20, 80)), y + int(rng.integers(20, 80))), float(rng.uniform(60, 200)), -1)
    tiles = np.dstack([cv2.GaussianBlur(plane, (0, 0), 1.0)] * 3).astype(np.uint8)
    lq = cv2.GaussianBlur(tiles, (0, 0), 1.2)
    crisp = Artifacts().score_pair(lq, usm(tiles, 1.0, 2.0))  # a rim on half the edge pixels, a weak one
    assert isinstance(crisp, PairScores) and crisp.unsure.startswith("halo: a rim on"), crisp
    assert "halo" not in fails(crisp.values)
    strong = Artifacts().score_pair(lq, usm(tiles, 2.5, 2.0))
    assert "halo" in fails(strong.values if isinstance(strong, PairScores) else strong)
ARTIFACT_FAULTS = {
    "blockiness": lambda s: jpeg(s, 8),
    "noise": lambda s: np.clip(s + np.random.default_rng(0).normal(0, 15, s.shape), 0, 255).astype(np.uint8),
    "halo": lambda s: np.clip(s + 2.5 * (s - cv2.GaussianBlur(s.astype(np.float32), (0, 0), 2.0)), 0, 255).astype(np.uint8),
    "detail": lambda s: cv2.GaussianBlur(cv2.bilateralFilter(cv2.bilateralFilter(s, 9, 60, 7), 9, 60, 7), (0, 0), 1.2),
}


@pytest.mark.parametrize("field", list(ARTIFACT_FAULTS))
def test_artifacts_catch_each_fault_in_its_own_field(scene, field):
    lq = degrade.mixed(scene)
    got = scores(lq, ARTIFACT_FAULTS[field](scene))
    assert field in fails(got), got
    assert fails(scores(lq, scene)) == []


def contrast(image, gain):
    return np.clip((image.astype(np.float32) - 128) * gain + 128, 0, 255).astype(np.uint8)


def test_halo_is_judged_where_edges_have_room_to_overshoot():
    # Blown white suit on black space: sharpening cannot overshoot either plateau there.
    clipped = contrast(cv2.resize(photos()[0], (480, 480), interpolation=cv2.INTER_AREA), 1.6)
    lq = degrade.mixed(clipped)
    assert "halo" not in fails(scores(lq, clipped))
    assert "halo" in fails(scores(lq, ARTIFACT_FAULTS["halo"](clipped)))


def test_halo_does_not_judge_a_mostly_clipped_star_field_on_its_stars():
    stars = contrast(cv2.resize(photos()[4], (480, 480), interpolation=cv2.INTER_AREA), 1.6)
    assert "halo" not in fails(scores(degrade.mixed(stars), stars))


@pytest.mark.parametrize(
    "group,interpolation,factor",
    [
        ("mixed", cv2.INTER_CUBIC, 2),
        ("rain", cv2.INTER_LANCZOS4, 2),
        ("snow", cv2.INTER_LINEAR, 2),
        ("rain", cv2.INTER_LINEAR, 4),  # the bilinear round trip blurs thin streaks most at 4x
        ("mixed", cv2.INTER_CUBIC, 4),
    ],
)
def test_artifacts_flag_a_target_that_is_the_lq_upscaled(scene, group, interpolation, factor):
    size = (480, 320)
    lq = getattr(degrade, group)(cv2.resize(scene, (480 // factor, 320 // factor), interpolation=cv2.INTER_AREA))
    got = scores(lq, cv2.resize(lq, size, interpolation=interpolation))
    assert got["change"] < 1 and "change" in fails(got)
    restored = scores(lq, cv2.resize(scene, size, interpolation=cv2.INTER_AREA))
    assert "change" not in fails(restored), restored


def soft(scene, contrast):
    """A low-contrast version of the scene: a smooth photo."""
    return np.clip(scene.astype(np.float32) * contrast + 128 * (1 - contrast), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("contrast", [0.2, 0.4])
def test_a_smooth_source_restored_goes_to_review_not_to_rejection(scene, contrast):
    # A low-contrast photo defocused: its faithful restoration changes it by 1-2.5 grey
    # levels, under the limit, but much of the little detail the source holds.
    clean = soft(scene, contrast)
    lq = cv2.GaussianBlur(clean, (0, 0), 1.5)
    got, note = artifacts_scores(lq, clean)
    assert got["lq_detail"] < SMOOTH_SOURCE
    assert "change" not in fails(got)
    assert note is not None and "the source is smooth" in note


@pytest.mark.parametrize("contrast", [0.15, 0.3])
@pytest.mark.parametrize("factor", [1, 2, 4])
def test_a_smooth_source_not_restored_is_still_rejected(scene, contrast, factor):
    clean = soft(scene, contrast)
    lq = cv2.resize(clean, (480 // factor, 320 // factor), interpolation=cv2.INTER_AREA)
    upscaled = cv2.resize(lq, (480, 320), interpolation=cv2.INTER_CUBIC)
    for target in (upscaled, jpeg(upscaled, 90), np.clip(upscaled.astype(np.int16) + 2, 0, 255).astype(np.uint8)):
        got, note = artifacts_scores(lq, target)
        assert got["lq_detail"] < SMOOTH_SOURCE
        assert "change" in fails(got) and note is None, (got, note)


def test_a_tone_shift_of_a_smooth_source_is_no_restoration(scene):
    # the share reads the band of the source's detail: brightening is not restoring
    lq = cv2.GaussianBlur(soft(scene, 0.3), (0, 0), 1.5)
    got, note = artifacts_scores(lq, np.clip(lq.astype(np.int16) + 2, 0, 255).astype(np.uint8))
    assert 1.5 < got["change"] < 2.5 and note is None


@pytest.mark.parametrize("factor", [1, 4])
def test_a_source_without_detail_is_read_in_grey_levels(factor):
    # a smooth sky: its detail is under 8-bit rounding, so a share of it means nothing
    yy, xx = np.mgrid[0:320, 0:480].astype(np.float32)
    sky = np.stack([100 + 0.2 * yy, 140 + 0.15 * yy + 0.02 * xx, 200 + 0.1 * yy], axis=2).astype(np.uint8)
    lq = cv2.resize(sky, (480 // factor, 320 // factor), interpolation=cv2.INTER_AREA)
    got, note = artifacts_scores(lq, cv2.resize(lq, (480, 320), interpolation=cv2.INTER_CUBIC))
    assert got["lq_detail"] < MIN_DETAIL
    assert "change" in fails(got) and note is None


def test_a_detailed_source_is_read_in_grey_levels_alone(scene):
    lq = jpeg(scene, 80)
    got, note = artifacts_scores(lq, scene)
    assert got["lq_detail"] >= SMOOTH_SOURCE
    overall, _ = change(lq, scene, luma(lq))
    assert got["change"] == pytest.approx(overall) and note is None


def sparse_rain(image, count, seed=0):
    """Thin, faint streaks, few of them: the LQ of a 4x pair with light rain."""
    rng = np.random.default_rng(seed)
    streaks = np.zeros(image.shape[:2], np.float32)
    for y, x in zip(rng.integers(0, image.shape[0], count), rng.integers(0, image.shape[1], count)):
        cv2.line(streaks, (int(x), int(y)), (int(x) + 2, int(y) + 12), 1.0, 1)
    streaks = cv2.GaussianBlur(streaks, (0, 0), 0.8)[..., None] * 0.5
    return np.clip(image * (1 - streaks) + 235 * streaks, 0, 255).astype(np.uint8)


def test_a_4x_target_with_thin_rain_removed_counts_as_restored():
    # A bilinear 4x round trip blurs thin streaks as much as removing them does, unless
    # the comparison leaves out the finest band.
    photo = photos()[0]
    lq = sparse_rain(cv2.resize(photo, (90, 90), interpolation=cv2.INTER_AREA), 30)
    clean = cv2.resize(photo, (360, 360), interpolation=cv2.INTER_AREA)
    assert "change" not in fails(scores(lq, clean))
    upscaled = cv2.resize(lq, (360, 360), interpolation=cv2.INTER_LINEAR)
    assert "change" in fails(scores(lq, upscaled))


@pytest.mark.parametrize(
    "target",
    [
        lambda s: np.full_like(s, 255),  # blank
        lambda s: (s * 0.08).astype(np.uint8),  # blacked out
        lambda s: (s * 0.08 + 215).astype(np.uint8),  # washed out
    ],
    ids=["blank", "dark", "washed_out"],
)
def test_artifacts_flag_a_target_that_lost_the_tonal_range(scene, target):
    got = scores(degrade.mixed(scene), target(scene))
    assert "tonal_range" in fails(got), got


def test_a_night_scene_restored_from_snow_keeps_its_tonal_range(scene):
    night = (scene * 0.25).astype(np.uint8)
    assert "tonal_range" not in fails(scores(degrade.snow(night), night))


def test_nonzero_lists_pixels_in_np_nonzero_order():
    mask = (np.random.default_rng(0).random((40, 50)) < 0.2).astype(np.uint8)
    xs, ys = nonzero(mask)
    rows, cols = np.nonzero(mask)
    assert np.array_equal(ys, rows) and np.array_equal(xs, cols)
    assert [len(a) for a in nonzero(np.zeros((4, 4), np.uint8))] == [0, 0]


def test_least_squares_fits_nearly_collinear_upscales_as_lstsq_does(scene):
    # new_detail's basis: the LQ upscaled three ways and its unsharp terms upscaled (condition number over 1e6)
    y_lq = cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY).astype(np.float32)
    size = (y_lq.shape[1] * 2, y_lq.shape[0] * 2)
    terms = [cv2.resize(y_lq, size, interpolation=i) for i in (cv2.INTER_CUBIC, cv2.INTER_LINEAR, cv2.INTER_LANCZOS4)]
    terms += [cv2.resize(y_lq - cv2.GaussianBlur(y_lq, (0, 0), k), size, interpolation=cv2.INTER_CUBIC) for k in SHARPEN_RADII]
    basis = np.stack([t.ravel() for t in terms] + [np.ones(terms[0].size, np.float32)]).astype(np.float64)
    assert np.linalg.cond(basis.T) > 1e6
    target = usm(cv2.resize(scene, size, interpolation=cv2.INTER_CUBIC), 0.5, 1.0)[..., 1].ravel().astype(np.float64)
    reference, *_ = np.linalg.lstsq(basis.T, target, rcond=None)
    residual = target - basis.T @ least_squares(basis, target)
    assert np.sqrt(np.mean(residual**2)) == pytest.approx(np.sqrt(np.mean((target - basis.T @ reference) ** 2)), abs=1e-6)


# --- the torch path's steps against the OpenCV/NumPy calls they mirror (ggtqc.kernels.artifacts) ---

ODD_SHAPES = [(9, 8), (37, 50), (64, 96), (101, 77)]


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_kernel_filters_are_opencvs(shape):
    import torch

    from ggtqc.kernels import artifacts as kernel
    from ggtqc.kernels.planes import REFLECT

    plane = (np.random.default_rng(shape[0]).random(shape) * 255).astype(np.float32)
    planes = torch.from_numpy(plane).double()[None]
    for sigma in (0.25, 0.7, 1.5, 3.0):  # 3, 7, 13 and 25 taps: wider than the smallest plane
        for border, flag in ((kernel.REFLECT_101, cv2.BORDER_DEFAULT), (REFLECT, cv2.BORDER_REFLECT)):
            expected = cv2.GaussianBlur(plane, (0, 0), sigma, borderType=flag)
            assert np.abs(kernel.gaussian_blur(planes, sigma, border)[0].numpy() - expected).max() < 1e-3, (sigma, border)
    gx, gy = kernel.sobel(planes)
    assert np.abs(gx[0].numpy() - cv2.Sobel(plane, cv2.CV_32F, 1, 0)).max() < 1e-3
    assert np.abs(gy[0].numpy() - cv2.Sobel(plane, cv2.CV_32F, 0, 1)).max() < 1e-3
    for width in (3, 5, 21):
        square = np.ones((width, width), np.uint8)
        assert np.array_equal(kernel.dilate(planes, width)[0].numpy(), cv2.dilate(plane, square))
        assert np.array_equal(kernel.erode(planes, width)[0].numpy(), cv2.erode(plane, square))


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("factor", [2, 4, 2.5])
def test_kernel_resizes_are_opencvs(shape, factor):
    import torch

    from ggtqc.kernels import artifacts as kernel

    rng = np.random.default_rng(7)
    target = (round(shape[0] * factor), round(shape[1] * factor))
    plane = (rng.random(shape) * 255).astype(np.float32)
    for kind, flag in (("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC), ("lanczos4", cv2.INTER_LANCZOS4)):
        expected = cv2.resize(plane, target[::-1], interpolation=flag)
        got = kernel.resize(torch.from_numpy(plane).double()[None], target, kind)[0].numpy()
        assert np.abs(got - expected).max() < 2e-3, kind
    image = rng.integers(0, 256, (*shape, 3), np.uint8)
    expected = cv2.resize(image, target[::-1], interpolation=cv2.INTER_LINEAR).astype(int)
    got = kernel.linear_resize_u8(torch.from_numpy(image).permute(2, 0, 1)[None], target)[0].permute(1, 2, 0).numpy().astype(int)
    # a level apart where OpenCV takes its scalar loop (a row's tail: a larger share of a narrow plane)
    assert np.abs(got - expected).max() <= 1 and (got != expected).mean() < 0.05


def test_kernel_percentiles_are_numpys():
    import torch

    from ggtqc.kernels import artifacts as kernel

    rng = np.random.default_rng(3)
    values = rng.random((3, 1001)) * 300
    values[1, :500] = 7.0  # ties
    mask = rng.random((3, 1001)) < 0.3
    mask[2] = False  # a row that selects nothing
    for q in (1, 30, 50, 60, 95, 99):
        rows = kernel.percentile(torch.from_numpy(values), q).numpy()
        assert rows == pytest.approx([np.percentile(v, q) for v in values], rel=1e-12)
        masked = kernel.masked_percentile(torch.from_numpy(values), torch.from_numpy(mask), q).numpy()
        assert masked[:2] == pytest.approx([np.percentile(v[m], q) for v, m in zip(values[:2], mask[:2])], rel=1e-12)
        assert np.isnan(masked[2])
