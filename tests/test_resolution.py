"""resolution: sizes, scale and shape of a pair, measured from the image sizes alone."""

import math

import numpy as np
import pytest

from ggtqc.batch import Batch
from ggtqc.plugins.resolution import Resolution
from tests.helpers import failing_fields, scores


def blank(h, w):
    return np.zeros((h, w, 3), np.uint8)


def test_a_2x_pair_measures_its_sides_and_scale():
    got = scores(Resolution, blank(200, 300), blank(400, 600))
    assert got["lq_short_side"] == 200 and got["hq_short_side"] == 400 and got["hq_long_side"] == 600
    assert got["scale"] == 2.0 and got["aspect_error"] == pytest.approx(0.0)
    assert math.isnan(got["scale_error"])  # no expected scale: not measured
    assert failing_fields(Resolution, got) == []


def test_scale_is_taken_on_the_tighter_axis_and_a_stretch_shows_as_aspect_error():
    got = scores(Resolution, blank(200, 300), blank(400, 660))  # 10% wider than 2x
    assert got["scale"] == 2.0
    assert got["aspect_error"] == pytest.approx(math.log(1.1))
    assert failing_fields(Resolution, got) == ["aspect_error"]


def test_a_target_smaller_than_its_source_and_too_small_to_train_on_fails():
    got = scores(Resolution, blank(300, 300), blank(150, 150))
    assert got["scale"] == 0.5
    assert set(failing_fields(Resolution, got)) == {"hq_short_side", "scale"}


def test_an_expected_scale_measures_the_distance_from_it():
    f = Resolution(expected_scale=4)
    out = f.score(Batch(["a", "b"], [blank(100, 100), blank(100, 100)], [blank(400, 400), blank(300, 300)]))
    assert out["scale_error"][0] == pytest.approx(0.0)
    assert out["scale_error"][1] == pytest.approx(0.25)
