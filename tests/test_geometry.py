"""geometry: shift, rotation, zoom and mirroring of the target, each on a hand-made fault and its honest twin."""

import math

import cv2
import numpy as np
import pytest

from benchmarks import planted  # the accuracy benchmark's degradations
from examples import make_pairs as degrade  # the sample pairs' degradations
from ggtqc.plugins import geometry
from ggtqc.plugins.geometry import Geometry
from tests.helpers import failing_fields, photos, retoned, scores


@pytest.fixture(scope="module")
def scene():
    return cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)  # coffee


def warp(image, matrix):
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def test_geometry_accepts_a_retoned_target_shifted_by_a_pixel(scene):
    hq = warp(retoned(scene), np.float32([[1, 0, 1], [0, 1, 0]]))
    got = scores(Geometry, degrade.haze(scene), hq)
    assert got["displacement_px"] < 2 and got["mirror_gain"] == 0 and got["correlation"] > 0.8
    assert failing_fields(Geometry, got) == []


@pytest.mark.parametrize(
    "matrix,estimate",
    [
        (np.float32([[1, 0, 15], [0, 1, 4]]), (15, 4, 1.0, 0.0)),  # 3% shift, right and down
        (cv2.getRotationMatrix2D((240, 160), 3.0, 1.0), (0, 0, 1.0, 3.0)),  # counter-clockwise on screen
        (cv2.getRotationMatrix2D((240, 160), -4.0, 1.0), (0, 0, 1.0, -4.0)),
        (cv2.getRotationMatrix2D((240, 160), 0.0, 1.05), (0, 0, 1.05, 0.0)),  # zoom
    ],
)
def test_geometry_measures_shift_rotation_and_zoom_in_lq_pixels(scene, matrix, estimate):
    got = scores(Geometry, degrade.mixed(scene), warp(scene, matrix))
    corners = np.array([[0, 0, 1], [480, 0, 1], [0, 320, 1], [480, 320, 1]], np.float64)
    truth = np.hypot(*(corners @ matrix.astype(np.float64).T - corners[:, :2]).T).max()
    assert got["displacement_px"] == pytest.approx(truth, rel=0.25)
    assert "displacement_px" in failing_fields(Geometry, got)
    shift_x, shift_y, scale, rotation = estimate
    assert got["shift_x_px"] == pytest.approx(shift_x, abs=0.5) and got["shift_y_px"] == pytest.approx(shift_y, abs=0.5)
    assert got["scale"] == pytest.approx(scale, abs=0.005) and got["rotation_deg"] == pytest.approx(rotation, abs=0.2)


def test_geometry_reports_in_lq_pixels_for_a_2x_target(scene):
    hq = cv2.resize(warp(scene, np.float32([[1, 0, 12], [0, 1, -6]])), (960, 640), interpolation=cv2.INTER_CUBIC)
    got = scores(Geometry, degrade.mixed(scene), hq)
    assert got["displacement_px"] == pytest.approx(math.hypot(12, 6), rel=0.2)
    assert got["shift_x_px"] == pytest.approx(12, abs=0.5) and got["shift_y_px"] == pytest.approx(-6, abs=0.5)
    assert got["scale"] == pytest.approx(1.0, abs=0.005)  # the 2x is the pair's scale, not a zoom


def test_geometry_flags_a_mirrored_target(scene):
    got = scores(Geometry, degrade.mixed(scene), scene[:, ::-1])
    assert got["mirror_gain"] > 0.3 and "mirror_gain" in failing_fields(Geometry, got)


@pytest.mark.parametrize("seed", [3, 8, 22])
def test_geometry_aligns_an_honest_target_of_a_scratched_photo(seed):
    # With scratches and dust together, phase correlation gives these pairs a wrong shift, and
    # ECC started there read them as moved 69, 29 and 47 px; from no move it aligns.
    hq = cv2.resize(photos()[3], (480, 320), interpolation=cv2.INTER_AREA)  # rocket
    lq = planted.old_photo_shifted(cv2.resize(hq, (240, 160), interpolation=cv2.INTER_AREA), np.random.default_rng(seed))
    got = scores(Geometry, lq, hq)
    assert got["displacement_px"] < 3 and got["correlation"] > 0.5
    assert failing_fields(Geometry, got) == []


@pytest.mark.parametrize("scale,seed", [(1, 5), (2, 19), (2, 23)])
def test_geometry_does_not_fit_scale_to_snow(scale, seed):
    # Affine ECC read these honest targets of snowy rocket crops as moved by 3.7, 5.1 and 46 px
    # (scale and shear fitted to flakes and smoke); the rigid fit is kept unless they clearly pay.
    rng = np.random.default_rng(seed)
    rocket = photos()[3]
    y, x = int(rng.integers(0, rocket.shape[0] - 320)), int(rng.integers(0, rocket.shape[1] - 480))
    hq = rocket[y : y + 320, x : x + 480]
    lq = planted.snow(cv2.resize(hq, (480 // scale, 320 // scale), interpolation=cv2.INTER_AREA), rng)
    got = scores(Geometry, lq, np.roll(hq, 1, axis=1))
    assert got["displacement_px"] < 3 and failing_fields(Geometry, got) == [], got


def test_geometry_does_not_estimate_a_blank_frame(scene):
    got = scores(Geometry, degrade.mixed(scene), np.full_like(scene, 255))
    assert all(math.isnan(v) for v in got.values()), got


def test_geometry_fits_no_affine_warp_where_a_rigid_fit_leaves_no_room_for_its_gain(scene, monkeypatch):
    plane = geometry.structure_only(cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY).astype(np.float32))
    motions = []
    refine = geometry.refine
    monkeypatch.setattr(geometry, "refine", lambda *args: motions.append(args[3]) or refine(*args))
    warp, correlation = geometry.fit(plane, plane, geometry.IDENTITY)
    assert correlation > 1 - geometry.AFFINE_GAIN and motions == [cv2.MOTION_EUCLIDEAN]
    shifted = np.roll(plane, 3, axis=1) + np.random.default_rng(0).normal(0, 1.5, plane.shape).astype(np.float32)
    motions.clear()
    geometry.fit(plane, shifted, geometry.shift_start(plane, shifted))
    assert motions == [cv2.MOTION_EUCLIDEAN, cv2.MOTION_AFFINE]  # noise keeps the rigid fit under 0.98


# --- the torch path's steps against OpenCV (the whole filter: tests/test_torch_parity.py) ---


@pytest.mark.parametrize("shape", [(170, 256), (225, 256), (256, 243), (45, 75), (18, 36)])
def test_the_torch_phase_correlation_is_opencvs(shape):
    """Padding to OpenCV's DFT size, the quadrant swap (odd fast sizes too) and the centroid."""
    import torch

    from ggtqc.kernels import geometry as kernel

    h, w = shape
    base = cv2.GaussianBlur(np.random.default_rng(h).normal(size=(h + 10, w + 10)).astype(np.float32), (0, 0), 1.5)
    template, moving = base[5 : 5 + h, 5 : 5 + w].copy(), base[3 : 3 + h, 6 : 6 + w].copy()
    expected, _ = cv2.phaseCorrelate(template.copy(), moving.copy(), cv2.createHanningWindow((w, h), cv2.CV_32F))
    got = kernel.phase_shift(torch.from_numpy(template.astype(np.float64))[None], torch.from_numpy(moving.astype(np.float64))[None])
    assert got[0].tolist() == pytest.approx(expected, abs=5e-3)


@pytest.mark.parametrize(
    "matrix",
    [[[0.99, 0.031, 1.37], [-0.029, 1.01, -2.21]], [[1, 0, -0.5], [0, 1, 0.5]], [[1, 0, -1.5], [0, 1, 2.5]], [[0.97, -0.2, -3.49], [0.21, 0.98, 0.31]]],
)
def test_the_torch_warp_is_opencvs(matrix):
    """Bilinear with zeros outside, and the nearest-sample mask ECC counts, as the installed
    OpenCV's warpAffine (float positions in OpenCV 5, 1/32 px in OpenCV 4), edges included."""
    import torch

    from ggtqc.kernels import geometry as kernel

    image = np.random.default_rng(0).normal(size=(40, 50)).astype(np.float32)
    m = np.float32(matrix)
    warp = torch.from_numpy(m.astype(np.float64))[None]
    linear = cv2.warpAffine(image, m, (50, 40), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    mask = cv2.warpAffine(np.ones((40, 50), np.uint8), m, (50, 40), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    assert np.abs(kernel.warp_linear(torch.from_numpy(image.astype(np.float64))[None, None], warp)[0, 0].numpy() - linear).max() < 1e-5
    assert (kernel.warp_mask(warp, 40, 50)[0].numpy() == mask.astype(bool)).all()


def test_the_torch_path_leaves_a_close_decision_to_the_cpu_path(scene, monkeypatch):
    """Where the estimate's branches (the affine gain, the restart from no move, the mirror's
    second stage) compare correlations closer than float rounding can be trusted, the pair is
    scored on the CPU path: here every decision is made close, so every pair is."""
    from ggtqc.batch import Batch
    from ggtqc.kernels import geometry as kernel
    from ggtqc.kernels.planes import IMPL_VARIABLE

    lq = [degrade.mixed(scene), degrade.haze(scene)]
    hq = [warp(scene, np.float32([[1, 0, 2], [0, 1, 1]])), scene[:, ::-1].copy()]
    batch = Batch(["shifted", "mirrored"], lq, hq)
    monkeypatch.setenv(IMPL_VARIABLE, "numpy")
    cpu = Geometry().score(batch)
    monkeypatch.setenv(IMPL_VARIABLE, "torch")
    monkeypatch.setattr(kernel, "DECISION_MARGIN", 10.0)
    assert Geometry().score(batch) == cpu
