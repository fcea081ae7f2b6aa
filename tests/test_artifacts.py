"""artifacts: the LQ's block grid carried to HQ scale, new detail at HQ scale, and crisp targets that are no halo."""

import cv2
import numpy as np
import pytest

from tests.helpers import failing_fields, photos
from ggtqc.batch import Batch
from ggtqc.plugins.artifacts import Artifacts, integer_scale


def scores(lq, hq):
    out = Artifacts().score(Batch(["p"], [np.ascontiguousarray(lq)], [np.ascontiguousarray(hq)]))
    return {k: v[0] for k, v in out.items()}


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
