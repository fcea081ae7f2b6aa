"""color: a recoloured object is local colour change, a global change is not; on whole pairs,
each colour fault against its honest twin."""

import math
import re

import cv2
import numpy as np
import pytest

from examples import make_pairs as degrade  # the sample pairs' degradations
from ggtqc import PairScores
from ggtqc.plugins.artifacts import Artifacts
from ggtqc.plugins.color import Color, compare
from tests.helpers import failing_fields, photos, retoned, scores


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


def blue_veil(image):
    return np.clip(image * 0.45 + np.array([150, 170, 205]) * 0.55, 0, 255).astype(np.uint8)


def test_a_veil_lifted_from_a_coloured_scene_is_judged_as_a_cast_removed(scene):
    got = compare(blue_veil(scene), scene, 64, 4.0)  # the veil greyed the suit and the flag; the target colours them again
    assert isinstance(got, PairScores) and "as when a veil is lifted" in got.unsure and "(hue 26 deg" in got.unsure, got
    assert failing_fields(Color, got.values) == [], got.values


def test_a_cast_added_while_lifting_a_veil_is_sent_to_review_as_the_greys_cannot_tell(scene):
    got = compare(blue_veil(scene), shifted(scene, 6, 22), 64, 4.0)  # a person, or the judge, tells this from a removal
    assert isinstance(got, PairScores) and "as when a veil is lifted" in got.unsure, got


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_a_cast_added_over_a_clear_source_is_no_veil_lifted(scene, degrees):
    # a cast lowers one channel and raises another: the darkest channel falls, every channel does not
    angle = math.radians(degrees)
    got = compare(degrade.mixed(scene), shifted(scene, 18 * math.cos(angle), 18 * math.sin(angle)), 64, 4.0)
    assert not isinstance(got, PairScores) and {"cast", "hue_shift_deg"} & set(failing_fields(Color, got)), got


def test_a_colour_change_in_the_review_band_as_measured_is_not_accepted_after_correction(scene):
    # the white suit tinted a little: removing that tint is judged after taking it out, and
    # where the fields as measured would have been in their review band, a person looks
    got = compare(shifted(scene, 0, 10.2), scene, 64, 4.0)
    assert isinstance(got, PairScores), got
    measured_cast = float(re.search(r"cast ([0-9.]+) before", got.unsure).group(1))
    assert 6.5 - 0.325 <= measured_cast < 6.5 and failing_fields(Color, got.values) == [], got  # in the band, under the limit


def test_a_hue_turn_of_a_photo_without_greys_cannot_be_told_from_a_cast_removed():
    coffee = cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)  # browns, no greys
    got = compare(coffee, turn_hue(coffee, 30), 64, 4.0)
    assert isinstance(got, PairScores) and "(hue 29 deg" in got.unsure and failing_fields(Color, got.values) == [], got


def test_a_filter_that_is_unsure_sends_the_pair_to_review(scene, tmp_path):
    from ggtqc import create_filter

    result = create_filter("color").score_pair(shifted(scene, 6, 22), scene)
    assert result["verdict"] == "review", result
    assert any(r.startswith("color unsure: cast: the colours moved toward neutral") for r in result["reasons"]), result
# --- the filter on whole pairs: hand-made faults and their honest twins -------------------


@pytest.fixture(scope="module")
def coffee():
    return cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)


def in_lab(image, change):
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    change(lab)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255 + 0.5, 0, 255).astype(np.uint8)


def rotate_hue(degrees):
    def change(lab):
        t = math.radians(degrees)
        a, b = lab[..., 1].copy(), lab[..., 2].copy()
        lab[..., 1], lab[..., 2] = a * math.cos(t) - b * math.sin(t), a * math.sin(t) + b * math.cos(t)

    return change


@pytest.mark.parametrize("group", ["mixed", "haze", "low_light", "rain", "snow"])
def test_color_accepts_honest_restorations(coffee, group):
    got = scores(Color, getattr(degrade, group)(coffee), retoned(coffee))
    assert failing_fields(Color, got) == [], got


def test_color_undoes_a_tone_curve_applied_per_channel(coffee):
    dark = np.clip((coffee / 255.0) ** 2.6 * 0.3 * 255 + 0.5, 0, 255).astype(np.uint8)  # a camera's curve, channel by channel
    got = scores(Color, dark, coffee)
    assert got["hue_shift_deg"] < 3 and got["cast"] < 3, got


def test_color_ignores_the_hues_of_noise_on_a_grey_photo(coffee):
    grey = np.repeat(cv2.cvtColor(coffee, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    small = cv2.resize(grey, (160, 107), interpolation=cv2.INTER_AREA).astype(np.float64)
    lq = np.clip(small * 0.3 + np.random.default_rng(1).normal(0, 8, small.shape), 0, 255).astype(np.uint8)
    got = scores(Color, lq, grey)
    assert got["lq_free_chroma"] >= 4  # the noise has colour, so the photo is judged
    assert failing_fields(Color, got) == [] and (math.isnan(got["hue_shift_deg"]) or got["hue_shift_deg"] < 3), got


def test_color_judges_faint_but_clean_colour_behind_haze():
    clear = cv2.resize(photos()[0], (480, 320), interpolation=cv2.INTER_AREA)  # astronaut: flag, suit, sky
    hazy = (clear * 0.3 + 0.7 * 230).astype(np.uint8)
    honest, shifted = scores(Color, hazy, clear), scores(Color, hazy, in_lab(clear, rotate_hue(30)))
    assert honest["lq_free_chroma"] < 4 and failing_fields(Color, honest) == [], honest
    assert "hue_shift_deg" in failing_fields(Color, shifted), shifted


@pytest.mark.parametrize("factor", [1, 4])  # at 4x the LQ's grain is barely pooled: only colour above it counts
def test_color_skips_a_sepia_source(coffee, factor):
    small = cv2.resize(coffee, (480 // factor, 320 // factor), interpolation=cv2.INTER_AREA)
    got = scores(Color, degrade.old_photo(small), coffee)
    assert math.isnan(got["hue_shift_deg"]) and math.isnan(got["cast"]) and math.isnan(got["saturation"])
    assert got["lq_free_chroma"] < 4 and got["contrast"] > 0.9 and failing_fields(Color, got) == [], got  # its tone is still compared


@pytest.mark.parametrize("group", ["mixed", "haze", "rain", "snow", "old_photo"])  # not low light: below
def test_color_flags_a_faded_target_that_keeps_enough_tonal_range_to_pass_artifacts(coffee, group):
    faded = (coffee * 0.15 + 190).astype(np.uint8)  # a range of ~38 grey levels
    lq = getattr(degrade, group)(coffee)
    got = scores(Color, lq, faded)
    assert "contrast" in failing_fields(Color, got), got
    assert "tonal_range" not in failing_fields(Artifacts, scores(Artifacts, lq, faded))


def test_color_contrast_is_relative_to_the_source(coffee):
    dark = degrade.low_light(coffee)  # a dark source has little contrast to keep, so fading it is not seen
    assert scores(Color, dark, (coffee * 0.15 + 190).astype(np.uint8))["contrast"] > 0.5
    assert scores(Color, dark, coffee)["contrast"] > 2


def test_color_measures_a_hue_rotation():
    astronaut = cv2.resize(photos()[0], (480, 480), interpolation=cv2.INTER_AREA)  # greys that the turn keeps grey
    got = scores(Color, degrade.mixed(astronaut), in_lab(astronaut, rotate_hue(30)))
    assert got["hue_shift_deg"] == pytest.approx(30, abs=6) and "hue_shift_deg" in failing_fields(Color, got)


def test_color_measures_a_cast(coffee):
    def cast(lab):
        lab[..., 1] -= 15  # towards green, across the coffee's orange

    got = scores(Color, degrade.low_light(coffee), in_lab(coffee, cast))  # brightened, no veil lifted: greys tell
    assert 6.5 < got["cast"] < 20 and "cast" in failing_fields(Color, got)  # measured short: part reads as saturation


def desaturated(keep):
    def change(lab):
        lab[..., 1:] *= keep

    return change


@pytest.mark.parametrize("group", ["mixed", "haze", "low_light", "rain", "snow"])
def test_color_flags_a_target_that_drops_the_colour(coffee, group):
    lq = getattr(degrade, group)(coffee)
    grey = np.repeat(cv2.cvtColor(coffee, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    for target in (grey, in_lab(coffee, desaturated(0.35))):
        got = scores(Color, lq, target)
        assert got["saturation"] < 0.45 and failing_fields(Color, got) == ["saturation"], got
    kept = scores(Color, lq, retoned(coffee))["saturation"]  # an honest target keeps it, or raises it behind a veil
    assert 0.8 < kept < (2.5 if group in ("haze", "snow") else 1.25)
