import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from examples import make_pairs as degrade  # the sample pairs' degradations
from tests.helpers import photos
from ggtqc.batch import Batch
from ggtqc.host import Entry
from ggtqc.plugins.ssim import SSIM, plan
from ggtqc.runner import Stage, score_batch
from ggtqc.batch import LoadedPair
from ggtqc.pairs import Pair


def scores(lq, hq, **settings):
    f = SSIM(**settings)
    f.setup(torch.device("cpu"))
    out = f.score(Batch(["p"], [lq], [hq]))
    return {k: v[0] for k, v in out.items()}


@pytest.fixture(scope="module")
def scene():
    return cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)  # coffee: not symmetric


@pytest.mark.parametrize("group", ["mixed", "haze", "low_light", "old_photo", "rain", "snow"])
def test_honest_restorations_pass_their_thresholds(scene, group):
    got = scores(getattr(degrade, group)(scene), scene)
    assert got["structure"] >= 0.5 and got["structure_worst_tile"] >= 0.2, got


def test_low_light_pairs_are_judged_by_structure_not_brightness(scene):
    got = scores(degrade.low_light(scene), scene)
    assert got["ssim"] < 0.3 < 0.9 < got["structure"]


@pytest.mark.parametrize(
    "fault",
    [
        lambda s: s[:, ::-1],  # mirrored
        lambda s: np.roll(s, 40, axis=1),  # shifted scene
    ],
)
def test_content_faults_fail(scene, fault):
    got = scores(degrade.mixed(scene), np.ascontiguousarray(fault(scene)))
    assert got["structure"] < 0.5, got


def test_another_photo_scores_far_below_its_honest_twin(scene):
    # Flat areas agree by definition of the structure term, so a wrong photo can stay above
    # the threshold; the hallucination filter catches it. The drop must still be large.
    lq = degrade.mixed(scene)
    honest = scores(lq, scene)["structure"]
    wrong = scores(lq, np.ascontiguousarray(photos()[3][: scene.shape[0], : scene.shape[1]]))["structure"]
    assert wrong < honest - 0.2


def test_a_replaced_region_shows_in_the_worst_tile_not_the_mean(scene):
    lq = degrade.mixed(scene)
    honest = scores(lq, scene)
    hq = scene.copy()
    hq[150:230, 150:250] = photos()[0][150:230, 180:280]  # a pasted face, 5% of the frame
    got = scores(lq, hq)
    assert got["structure"] > 0.6 and got["structure"] > honest["structure"] - 0.1
    assert got["structure_worst_tile"] < 0.3 < 0.6 < honest["structure_worst_tile"]


@pytest.mark.parametrize("hq_size", [(960, 640), (720, 480), (700, 467), (400, 267)])
def test_any_hq_size_is_brought_to_an_integer_multiple(scene, hq_size):
    lq = degrade.mixed(scene)
    hq = cv2.resize(scene, hq_size, interpolation=cv2.INTER_CUBIC)
    p = plan(lq, hq, 256)
    assert p.hq.shape[:2] == (p.scale * lq.shape[0], p.scale * lq.shape[1])
    assert p.factor == 2  # 480 px long side analysed at ~256
    assert scores(lq, hq)["structure"] > 0.8


@pytest.mark.parametrize("photo", [4, 5])
def test_a_small_noisy_source_is_compared_pooled_not_at_its_own_pixels(photo):
    # The 120x80 source of a 4x pair, blurred and noisy at its own pixels: compared there,
    # its noise alone pulled an honest target's structure to 0.36-0.39.
    clean = cv2.resize(photos()[photo], (480, 320), interpolation=cv2.INTER_AREA)
    small = cv2.resize(clean, (120, 80), interpolation=cv2.INTER_AREA)
    lq = np.clip(cv2.GaussianBlur(small, (0, 0), 1.8) + np.random.default_rng(0).normal(0, 18, small.shape), 0, 255)
    lq = lq.astype(np.uint8)
    assert plan(lq, clean, 256).factor == 2
    assert scores(lq, clean)["structure"] >= 0.5 > scores(lq, np.ascontiguousarray(clean[:, ::-1]))["structure"]


def test_pairs_too_small_to_measure_are_not_measured():
    tiny = np.zeros((8, 300, 3), np.uint8)
    assert plan(tiny, tiny, 256) is None
    assert all(math.isnan(v) for v in scores(tiny, tiny).values())
    # A short LQ still gets measured, with a smaller pooling factor.
    strip = cv2.resize(photos()[0], (1000, 40))
    assert plan(strip, strip, 256).factor == 3 and scores(strip, strip)["structure"] > 0.99


@pytest.mark.parametrize("impl", ["triton", "torch"])
def test_batched_kernel_path_agrees_with_the_cpu_path(monkeypatch, impl):
    rng = np.random.default_rng(0)
    scenes = [cv2.resize(p, (60, 44)) for p in photos()[:4]]
    lqs = [np.clip(s + rng.normal(0, 8, s.shape), 0, 255).astype(np.uint8) for s in scenes]
    hqs = [cv2.resize(s, (120, 88)) for s in scenes[:3]] + [scenes[0][:, ::-1].copy()]
    f = SSIM(grid=2)
    f.setup(torch.device("cpu"))
    cpu = f.score(Batch(list("abcd"), lqs, hqs))
    monkeypatch.setenv("GGTQC_SSIM_IMPL", impl)
    if impl == "triton" and torch.cuda.is_available():  # else Triton's interpreter, on CPU tensors
        f.setup(torch.device("cuda"))
    batched = f.score(Batch(list("abcd"), lqs, hqs))
    for name in cpu:
        np.testing.assert_allclose(batched[name], cpu[name], atol=1e-5)


def test_scores_do_not_depend_on_batching(scene):
    pairs = [
        LoadedPair(Pair(str(k), Path("l"), Path("h"), Path(".")), lq, hq)
        for k, (lq, hq) in enumerate(
            [(degrade.haze(scene), scene), (degrade.rain(scene[:200]), scene[:200]), (scene, scene[:, ::-1].copy())]
        )
    ]
    stage = Stage(SSIM(), Entry(SSIM, "ssim", "ggtqc"), {f.name: f.threshold for f in SSIM.fields})
    stage.filter.setup(torch.device("cpu"))
    together = score_batch(pairs, [stage], True, torch.device("cpu"))
    assert together == [score_batch([p], [stage], True, torch.device("cpu"))[0] for p in pairs]
    assert [row["verdict"] for row in together] == ["accept", "accept", "reject"]
