"""The weights-free filters' torch path (what ``--device cuda`` runs) against their CPU path.

Both run here on CPU: ``GGTQC_FILTER_IMPL=torch`` forces the torch code onto CPU tensors,
``numpy`` the NumPy/OpenCV code. On real pairs (``examples/pairs``, planted faults of every
kind at 1x, 2x and 4x, the held-out families) every field must agree within its tolerance,
NaN where the other is NaN, and every pair must get the same outcome from each field at its
default threshold and review margin, and the same "unsure" notes.

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
color.cast                     5e-4        1.3e-4
color.lq_free_chroma           0.1         0.021 (recorded; 4 gates the colour fields)
color.contrast                 1e-5        1.4e-6
color.saturation               5e-5        7.3e-6
color.local                    0.02        0.004
color.cast_removed             5e-4        1e-4
hallucination.added            1e-4        3.7e-7
hallucination.removed          1e-4        5.7e-7
hallucination.replaced         1e-4        2.2e-6
resolution.*                   0           (one implementation: sizes only)
=============================  ==========  ===============================================
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import heldout, planted
from ggtqc import Scores
from ggtqc.batch import Batch
from ggtqc.decide import Rule, default_margin
from ggtqc.images import DecodeError, decode_image
from ggtqc.kernels.planes import IMPL_VARIABLE, use_torch
from ggtqc.pairs import discover
from ggtqc.plugins.color import Color
from ggtqc.plugins.hallucination import Hallucination
from ggtqc.plugins.resolution import Resolution
from tests.helpers import REPO

TOLERANCE = {
    "color.hue_shift_deg": 0.05,
    "color.cast": 5e-4,
    "color.lq_free_chroma": 0.1,
    "color.contrast": 1e-5,
    "color.saturation": 5e-5,
    "color.local": 0.02,
    "color.cast_removed": 5e-4,
    "hallucination.added": 1e-4,
    "hallucination.removed": 1e-4,
    "hallucination.replaced": 1e-4,
}
FILTERS = (Color, Hallucination, Resolution)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small planes, many small operations: on a shared machine, torch's second thread only
    waits for a core (the torch path took 10x longer here with two)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(root: Path) -> Batch:
    ids, lq, hq = [], [], []
    for pair in discover(root):
        if pair.error:
            continue
        try:
            images = decode_image(pair.lq), decode_image(pair.hq)
        except DecodeError:
            continue  # the sample folder's broken pairs
        ids.append(pair.id)
        lq.append(images[0])
        hq.append(images[1])
    return Batch(ids, lq, hq)


@pytest.fixture(scope="module")
def pair_sets(tmp_path_factory) -> dict[str, Batch]:
    root = tmp_path_factory.mktemp("parity")
    planted.make_pairs(root / "planted-calibration", "calibration", per_photo=1, seed=0, scales=(1, 2, 4))
    heldout.make_pairs(root / "heldout", per_photo=1, seed=0)
    sets = {"examples": REPO / "examples" / "pairs", "planted-calibration": root / "planted-calibration", "heldout": root / "heldout"}
    return {name: load(path) for name, path in sets.items()}


def score(cls, batch: Batch, impl: str, monkeypatch) -> tuple[dict[str, list[float]], list[str | None], list]:
    monkeypatch.setenv(IMPL_VARIABLE, impl)
    result = cls().score(Batch(batch.ids, batch.lq, batch.hq))  # a fresh cache: nothing carried from the other path
    if isinstance(result, Scores):
        return dict(result.values), list(result.unsure or [None] * len(batch)), list(result.heatmaps or [None] * len(batch))
    return dict(result), [None] * len(batch), [None] * len(batch)


def outcome(cls, values: dict[str, list[float]], unsure: list[str | None], i: int) -> tuple[str, ...]:
    """Each field's outcome at its default threshold and margin, and whether the filter is unsure."""
    rules = [Rule(f.name, f.better, f.threshold, default_margin(f.threshold, f.margin)) for f in cls.fields]
    return (*(rule.judge(values[rule.field][i]) for rule in rules), "unsure" if unsure[i] else "sure")


def compare_paths(cls, batch: Batch, monkeypatch) -> list[str]:
    """Every way the two paths disagree on ``batch``, in words (empty when they agree)."""
    cpu_values, cpu_unsure, cpu_maps = score(cls, batch, "numpy", monkeypatch)
    torch_values, torch_unsure, torch_maps = score(cls, batch, "torch", monkeypatch)
    problems = []
    for field in cls.fields:
        tolerance = TOLERANCE.get(f"{cls.name}.{field.name}", 0.0)
        for i, pair_id in enumerate(batch.ids):
            a, b = cpu_values[field.name][i], torch_values[field.name][i]
            if math.isnan(a) != math.isnan(b) or abs(a - b) > tolerance:
                problems.append(f"{pair_id} {cls.name}.{field.name}: cpu {a!r}, torch {b!r} (tolerance {tolerance})")
    for i, pair_id in enumerate(batch.ids):
        if outcome(cls, cpu_values, cpu_unsure, i) != outcome(cls, torch_values, torch_unsure, i):
            problems.append(f"{pair_id} {cls.name}: outcomes differ")
        if (cpu_maps[i] is None) != (torch_maps[i] is None):
            problems.append(f"{pair_id} {cls.name}: a heatmap on one path only")
        elif cpu_maps[i] is not None and not np.allclose(cpu_maps[i], torch_maps[i], atol=1e-3):
            problems.append(f"{pair_id} {cls.name}: heatmaps differ by {np.abs(cpu_maps[i] - torch_maps[i]).max():.3g}")
    return problems


@pytest.mark.parametrize("cls", FILTERS, ids=lambda cls: cls.name)
@pytest.mark.parametrize("pairs", ["examples", "planted-calibration", "heldout"])
def test_torch_path_agrees_with_the_cpu_path(cls, pairs, pair_sets, monkeypatch):
    batch = pair_sets[pairs]
    assert len(batch) >= 10
    problems = compare_paths(cls, batch, monkeypatch)
    assert not problems, f"{len(problems)} disagreements, the first: " + "; ".join(problems[:5])


def test_the_held_out_photos_too(tmp_path, monkeypatch):
    """The planted faults on the held-out split's photos (scikit-learn's and matplotlib's samples)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    planted.make_pairs(tmp_path, "heldout", per_photo=1, seed=1, scales=(1, 2, 4))
    batch = load(tmp_path)
    problems = [p for cls in FILTERS for p in compare_paths(cls, batch, monkeypatch)]
    assert not problems, f"{len(problems)} disagreements, the first: " + "; ".join(problems[:5])


def test_same_sized_pairs_score_as_one_group(pair_sets, monkeypatch):
    """Pairs of one size go through the torch path as one stacked group (the sets above are
    mostly of distinct sizes); a pair's scores must not depend on its group's other pairs."""
    source = pair_sets["heldout"]
    lq = [cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA) for image in source.lq]
    hq = [cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA) for image in source.hq]
    batch = Batch(source.ids, lq, hq)
    for cls in (Color, Hallucination):
        assert not compare_paths(cls, batch, monkeypatch)
        monkeypatch.setenv(IMPL_VARIABLE, "torch")
        together = cls().score(batch)
        alone = [cls().score(Batch([batch.ids[i]], [lq[i]], [hq[i]])) for i in (0, 7)]
        for k, i in enumerate((0, 7)):
            for field in cls.fields:
                a, b = _values(together)[field.name][i], _values(alone[k])[field.name][0]
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), (batch.ids[i], field.name)


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
