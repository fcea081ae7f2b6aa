"""color: a recoloured object is local colour change; a global change is not."""

import cv2
import numpy as np
import pytest

from conftest import failing_fields, photos
from ggtqc import PairScores
from ggtqc.plugins.color import Color, compare


@pytest.fixture(scope="module")
def scene():
    return cv2.resize(photos()[0], (360, 360), interpolation=cv2.INTER_AREA)  # astronaut


def turn_hue(image, degrees, mask=None):
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    mask = np.ones(image.shape[:2], np.float32) if mask is None else mask
    angle = np.deg2rad(degrees)
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1] = a * (1 - mask) + (a * np.cos(angle) - b * np.sin(angle)) * mask
    lab[..., 2] = b * (1 - mask) + (a * np.sin(angle) + b * np.cos(angle)) * mask
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255 + 0.5, 0, 255).astype(np.uint8)


def local(lq, hq):
    return compare(lq, hq, 64, 4.0)["local"]


def test_a_recoloured_object_is_local_change(scene):
    mask = np.zeros(scene.shape[:2], np.float32)
    cv2.ellipse(mask, (180, 250), (60, 50), 0, 0, 360, 1.0, -1)  # the orange suit
    recoloured = turn_hue(scene, 110, cv2.GaussianBlur(mask, (0, 0), 2))
    assert local(scene, recoloured) > 20
    assert local(scene, scene) < 5


@pytest.mark.parametrize("change", ["hue", "cast", "saturation"])
def test_a_global_colour_change_is_not_local(scene, change):
    if change == "hue":
        target = turn_hue(scene, 30)
    elif change == "cast":
        target = np.clip(scene * np.array([1.0, 0.9, 0.75]), 0, 255).astype(np.uint8)
    else:
        grey = scene.mean(axis=2, keepdims=True)
        target = np.clip(grey + (scene - grey) * 1.4, 0, 255).astype(np.uint8)
    assert local(scene, target) < 20


def shifted(image, da, db):
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    lab[..., 1] += da
    lab[..., 2] += db
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255 + 0.5, 0, 255).astype(np.uint8)


def test_a_cast_removed_from_the_source_is_sent_to_review_not_rejected(scene):
    tinted = shifted(scene, 6, 22)  # a yellowed print: its greys are yellow
    got = compare(tinted, scene, 64, 4.0)
    assert isinstance(got, PairScores) and got.unsure.startswith("cast: the colours moved toward neutral"), got
    assert got.values["cast_removed"] > 8  # CIELAB units of the tone-matched LQ, a part taken up by its saturation
    assert failing_fields(Color, got.values) == [], got.values  # judged after taking the removal out


def test_a_cast_added_to_a_source_with_greys_is_rejected(scene):
    got = compare(scene, shifted(scene, 6, 22), 64, 4.0)  # the same two images the other way round
    assert not isinstance(got, PairScores) and got["cast_removed"] == 0.0
    assert {"cast", "hue_shift_deg"} & set(failing_fields(Color, got)), got


def test_a_hue_turn_of_a_photo_without_greys_cannot_be_told_from_a_cast_removed():
    coffee = cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)  # browns, no greys
    got = compare(coffee, turn_hue(coffee, 30), 64, 4.0)
    assert isinstance(got, PairScores) and "(hue 29 deg" in got.unsure and failing_fields(Color, got.values) == [], got


def test_a_filter_that_is_unsure_sends_the_pair_to_review(scene, tmp_path):
    from ggtqc import create_filter

    result = create_filter("color").score_pair(shifted(scene, 6, 22), scene)
    assert result["verdict"] == "review", result
    assert any(r.startswith("color unsure: cast: the colours moved toward neutral") for r in result["reasons"]), result
