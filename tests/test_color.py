"""color: a recoloured object is local colour change; a global change is not."""

import cv2
import numpy as np
import pytest

from tests.helpers import photos
from ggtqc.plugins.color import compare


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
