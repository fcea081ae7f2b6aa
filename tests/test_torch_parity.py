"""The weights-free filters' torch path (what ``--device cuda`` runs) against their CPU path.

Both run here on CPU: ``GGTQC_FILTER_IMPL=torch`` forces the torch code onto CPU tensors,
``numpy`` the NumPy/OpenCV code. On real pairs (``examples/pairs``, planted faults of every
kind at 1x, 2x and 4x, the held-out families) every field must agree within its tolerance,
NaN where the other is NaN, and every pair must get the same outcome from each field at its
default threshold and review margin, and be marked "unsure" alike (whether, not the wording).

Tolerances are absolute, in each field's unit, a few times the largest difference measured
on these pairs and the planted faults on the held-out photos. What is left is float
rounding (the torch path computes in float64 where the CPU path has float32 OpenCV calls),
which now and then moves a pixel's CIELAB by one step of OpenCV's fixed-point table: the
hue's weighted median then lands on a neighbouring sample, and luma quantile bins of
``lq_free_chroma`` swap a pixel:

=============================  ==========  ===============================================
field                          tolerance   largest difference seen
=============================  ==========  ===============================================
color.hue_shift_deg            0.05 deg    0.021 (limit 10, review margin 0.5)
color.cast                     2e-3        2e-4 (limit 6.5, margin 0.325)
color.lq_free_chroma           0.1         0.021 (recorded; 4 gates the colour fields)
color.contrast                 1e-5        1.4e-6
color.saturation               5e-4        7.8e-5 (limit 0.5, margin 0.025)
color.local                    0.05        0.012 (limit 20, margin 1)
color.cast_removed             2e-3        1e-4
geometry.displacement_px       0.01 px     1.8e-3 (limit 3, review margin 0.15)
geometry.mirror_gain           5e-5        8.2e-8 (limit 0.1, margin 5e-3; see below)
geometry.correlation           5e-5        4.6e-6
geometry.shift_x_px            5e-3 px     7.4e-4
geometry.shift_y_px            5e-3 px     1.8e-4
geometry.scale                 5e-5        8.8e-8
geometry.rotation_deg          5e-3 deg    8.2e-4
hallucination.added            1e-4        3.7e-7
hallucination.removed          1e-4        5.7e-7
hallucination.replaced         1e-4        2.2e-6
artifacts.blockiness           1e-5        4.8e-7 (limit 1.3, margin 0.065)
artifacts.noise                5e-3        1.1e-3 (limit 3, margin 0.15)
artifacts.halo                 0.06        0.020 (limit 1.1, margin 0.1): one edge pixel
artifacts.detail               1e-5        5.8e-7 (limit 0.8, margin 0.1)
artifacts.clipped              1e-9        1.1e-16 (recorded)
artifacts.tonal_range          1e-4        2.1e-5 (limit 24, margin 1.2)
artifacts.change               0.03        9.3e-3 (limit 3, margin 0.15)
artifacts.lq_detail            1e-5        6.2e-7 (recorded; under 7.5 ``change`` reads a share of it)
resolution.*                   0           (one implementation: sizes only)
=============================  ==========  ===============================================

``geometry`` iterates ECC: OpenCV warps and sums its float32 images, the torch path its
float64 ones, and now and then a fit stops one iteration apart, which moves its warp by a
thousandth of a pixel and its correlation by up to ECC's own tolerance (1e-5): hence
``mirror_gain``'s tolerance, though no mirrored fit stopped apart on these pairs. A pair
whose estimate takes a branch by a margin that float rounding could turn (under 1e-4 of
correlation) is scored on the CPU path: 12 of the 302 pairs here.

``artifacts`` reads full-resolution planes where OpenCV's float32 results (luma, blurs,
Sobel) differ from float64 ones by a unit in the last place on most pixels. Its ringing
strength is a percentile over a few hundred edge pixels, thinned to the gradient's local
maxima: a gradient rounded otherwise adds or drops one of them, and ``halo`` moves by up to
0.02. ``change`` fits upscales that are nearly collinear, with coefficients in the
tens of thousands on the finest unsharp term, so float32 rounding of that term moves it by
up to a hundredth of a grey level on either path.

The tolerances live in ``benchmarks/gpu_weightsfree.py``, which checks the same on a GPU.
"""

from __future__ import annotations

import math

import cv2
import pytest

from benchmarks import heldout, planted
from benchmarks.gpu_weightsfree import disagreements, load
from ggtqc import Scores
from ggtqc.batch import Batch
from ggtqc.kernels.planes import IMPL_VARIABLE, use_torch
from ggtqc.plugins.artifacts import Artifacts
from ggtqc.plugins.color import Color
from ggtqc.plugins.geometry import Geometry
from ggtqc.plugins.hallucination import Hallucination
from ggtqc.plugins.resolution import Resolution
from tests.helpers import REPO

FILTERS = (Color, Hallucination, Resolution)
FILTERS += (Geometry,)
FILTERS += (Artifacts,)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small planes, many small operations: on a shared machine, torch's second thread only
    waits for a core (the torch path took 10x longer here with two)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair_sets(tmp_path_factory) -> dict[str, Batch]:
    root = tmp_path_factory.mktemp("parity")
    planted.make_pairs(root / "planted-calibration", "calibration", per_photo=1, seed=0, scales=(1, 2, 4))
    heldout.make_pairs(root / "heldout", per_photo=1, seed=0)
    sets = {"examples": REPO / "examples" / "pairs", "planted-calibration": root / "planted-calibration", "heldout": root / "heldout"}
    return {name: load(path) for name, path in sets.items()}


def compare_paths(cls, batch: Batch) -> list[str]:
    """Every way the torch path departs from the CPU path on ``batch`` (see ``TOLERANCE``)."""
    return disagreements(cls, batch)[0]


@pytest.mark.parametrize("cls", FILTERS, ids=lambda cls: cls.name)
@pytest.mark.parametrize("pairs", ["examples", "planted-calibration", "heldout"])
def test_torch_path_agrees_with_the_cpu_path(cls, pairs, pair_sets, monkeypatch):
    batch = pair_sets[pairs]
    assert len(batch) >= 10
    problems = compare_paths(cls, batch)
    assert not problems, f"{len(problems)} disagreements, the first: " + "; ".join(problems[:5])


def test_the_held_out_photos_too(tmp_path, monkeypatch):
    """The planted faults on the held-out split's photos (scikit-learn's and matplotlib's samples)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    planted.make_pairs(tmp_path, "heldout", per_photo=1, seed=1, scales=(1, 2, 4))
    batch = load(tmp_path)
    problems = [p for cls in FILTERS for p in compare_paths(cls, batch)]
    assert not problems, f"{len(problems)} disagreements, the first: " + "; ".join(problems[:5])


def test_same_sized_pairs_score_as_one_group(pair_sets, monkeypatch):
    """Pairs of one size go through the torch path as one stacked group (the sets above are
    mostly of distinct sizes); a pair's scores must not depend on its group's other pairs."""
    source = pair_sets["heldout"]
    lq = [cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA) for image in source.lq]
    hq = [cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA) for image in source.hq]
    batch = Batch(source.ids, lq, hq)
    for cls in (Color, Hallucination):
        assert not compare_paths(cls, batch)
        monkeypatch.setenv(IMPL_VARIABLE, "torch")
        together = cls().score(batch)
        alone = [cls().score(Batch([batch.ids[i]], [lq[i]], [hq[i]])) for i in (0, 7)]
        for k, i in enumerate((0, 7)):
            for field in cls.fields:
                a, b = _values(together)[field.name][i], _values(alone[k])[field.name][0]
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), (batch.ids[i], field.name)


def test_geometry_scores_a_group_as_its_pairs_alone(pair_sets, monkeypatch):
    """ECC iterates a group's pairs together, each stopping where it would alone; a blank
    frame in the group is left out of it (NaN on both paths)."""
    source = pair_sets["heldout"]
    lq = [cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA) for image in source.lq[:6]]
    hq = [cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA) for image in source.hq[:6]]
    hq[2] = hq[2] * 0 + 128
    batch = Batch(source.ids[:6], lq, hq)
    assert not compare_paths(Geometry, batch)
    monkeypatch.setenv(IMPL_VARIABLE, "torch")
    together = _values(Geometry().score(batch))
    assert all(math.isnan(together[field.name][2]) for field in Geometry.fields)
    for i in (0, 4):
        alone = _values(Geometry().score(Batch([batch.ids[i]], [lq[i]], [hq[i]])))
        for field in Geometry.fields:
            assert together[field.name][i] == pytest.approx(alone[field.name][0], rel=1e-9, abs=1e-12), (batch.ids[i], field.name)


def test_a_subset_reuses_the_batch_uploads(pair_sets, monkeypatch):
    """Filters after the first, and a subset of the batch, take the pairs uploaded already."""
    monkeypatch.setenv(IMPL_VARIABLE, "torch")
    source = pair_sets["examples"]
    batch = Batch(source.ids, source.lq, source.hq)
    first = Color().score(batch)
    uploads = {key: value for key, value in batch.cache.items() if key.startswith("torch-upload:")}
    assert len(uploads) == len(batch)
    subset = batch.subset([3, 1])
    again = Color().score(subset)
    assert {key for key in batch.cache if key.startswith("torch-upload:")} == set(uploads)
    for field in Color.fields:
        assert _values(again)[field.name] == pytest.approx([_values(first)[field.name][i] for i in (3, 1)], nan_ok=True)


def test_the_implementation_is_chosen_by_device_unless_forced(monkeypatch):
    import torch

    monkeypatch.delenv(IMPL_VARIABLE, raising=False)
    assert not use_torch(torch.device("cpu")) and use_torch(torch.device("cuda"))
    monkeypatch.setenv(IMPL_VARIABLE, "torch")
    assert use_torch(torch.device("cpu"))
    monkeypatch.setenv(IMPL_VARIABLE, "numpy")
    assert not use_torch(torch.device("cuda"))
    monkeypatch.setenv(IMPL_VARIABLE, "cupy")
    with pytest.raises(ValueError, match=IMPL_VARIABLE):
        use_torch(torch.device("cpu"))


def _values(result) -> dict[str, list[float]]:
    return dict(result.values) if isinstance(result, Scores) else dict(result)


def test_an_hq_smaller_than_the_views_is_scored_as_on_cpu(pair_sets, monkeypatch):
    """Area resizing only shrinks; an HQ smaller than the analysis views (a broken target)
    takes the CPU code inside the torch path, and a tiny LQ is not measured on either."""
    source = pair_sets["examples"]
    lq, hq = source.lq[0], source.hq[0]
    small_hq = cv2.resize(hq, (40, 30), interpolation=cv2.INTER_AREA)
    tiny_lq = cv2.resize(lq, (12, 12), interpolation=cv2.INTER_AREA)
    batch = Batch(["small-hq", "tiny-lq", "normal"], [lq, tiny_lq, lq], [small_hq, hq, hq])
    for cls in FILTERS:
        assert not compare_paths(cls, batch)


def test_artifacts_scores_a_group_in_chunks_as_alone(pair_sets, monkeypatch):
    """Same-sized pairs go through ``artifacts``' torch path as one group, split into chunks
    of at most ``CHUNK_PIXELS``; a pair's scores must not depend on its chunk's other pairs,
    and the weak-rim note must land on the same pairs."""
    from ggtqc.kernels import artifacts as kernel

    source = pair_sets["heldout"]
    lq = [cv2.resize(image, (96, 64), interpolation=cv2.INTER_AREA) for image in source.lq[:7]]
    hq = [cv2.resize(image, (192, 128), interpolation=cv2.INTER_AREA) for image in source.hq[:7]]
    batch = Batch(source.ids[:7], lq, hq)
    assert not compare_paths(Artifacts, batch)
    monkeypatch.setenv(IMPL_VARIABLE, "torch")
    together = Artifacts().score(batch)
    monkeypatch.setattr(kernel, "CHUNK_PIXELS", 3 * 192 * 128)  # chunks of 3, 3 and 1
    chunked = Artifacts().score(batch)
    for k in (0, 4, 6):
        alone = Artifacts().score(Batch([batch.ids[k]], [lq[k]], [hq[k]]))
        for field in Artifacts.fields:
            a, b, c = (_values(r)[field.name][i] for r, i in ((together, k), (chunked, k), (alone, 0)))
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), (batch.ids[k], field.name)
            assert a == pytest.approx(c, rel=1e-9, abs=1e-12, nan_ok=True), (batch.ids[k], field.name)
    assert isinstance(together, Scores) == isinstance(chunked, Scores)
    if isinstance(together, Scores):
        assert together.unsure == chunked.unsure
