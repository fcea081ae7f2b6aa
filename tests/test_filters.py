"""What every analysing filter (geometry, color, hallucination, artifacts) promises: a view too small
to analyse is not measured, and scores do not depend on how pairs are batched or threaded."""

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from examples import make_pairs as degrade  # the sample pairs' degradations
from ggtqc.batch import LoadedPair
from ggtqc.host import Entry
from ggtqc.pairs import Pair
from ggtqc.plugins.artifacts import Artifacts
from ggtqc.plugins.color import Color
from ggtqc.plugins.geometry import Geometry
from ggtqc.plugins.hallucination import Hallucination
from ggtqc.runner import Stage, score_batch
from tests.helpers import pasted, photos, scores


@pytest.fixture(scope="module")
def scene():
    return cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)  # coffee


@pytest.mark.parametrize("shape", [(1, 1), (4, 600), (600, 5)])
@pytest.mark.parametrize("cls", [Geometry, Color, Hallucination, Artifacts])
def test_a_view_too_small_to_analyse_is_not_measured(scene, cls, shape):
    tiny = cv2.resize(scene, shape[::-1], interpolation=cv2.INTER_AREA)
    got = scores(cls, tiny, tiny)
    assert all(math.isnan(v) for v in got.values()), got


@pytest.mark.parametrize("cls", [Geometry, Color, Hallucination, Artifacts])
def test_scores_do_not_depend_on_batching(scene, cls):
    cases = [(degrade.haze(scene), scene), (degrade.rain(scene[:200]), pasted(scene)[:200]), (degrade.mixed(scene), scene[:, ::-1])]
    pairs = [LoadedPair(Pair(str(k), Path("l"), Path("h"), Path(".")), lq, np.ascontiguousarray(hq)) for k, (lq, hq) in enumerate(cases)]
    stage = Stage(cls(), Entry(cls, cls.name, "ggtqc"), {f.name: f.threshold for f in cls.fields})
    cpu = torch.device("cpu")
    together = score_batch(pairs, [stage], True, cpu)
    alone = [score_batch([p], [stage], True, cpu)[0] for p in pairs]
    with ThreadPoolExecutor(3) as executor:
        threaded = score_batch(pairs, [stage], True, cpu, executor)
    assert [row["scores"] for row in together] == [row["scores"] for row in alone] == [row["scores"] for row in threaded]
    assert [row["verdict"] for row in together] == [row["verdict"] for row in alone] == [row["verdict"] for row in threaded]
