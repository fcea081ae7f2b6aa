"""geometry, color, hallucination and artifacts: each on a hand-made fault and its honest twin."""

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from benchmarks import planted  # the accuracy benchmark's degradations
from examples import make_pairs as degrade  # the sample pairs' degradations
from tests.helpers import failing_fields, photos
from ggtqc.batch import Batch, LoadedPair
from ggtqc.filters import Scores
from ggtqc.host import Entry
from ggtqc.pairs import Pair
from ggtqc.plugins.artifacts import Artifacts
from ggtqc.plugins.color import Color
from ggtqc.plugins.geometry import Geometry
from ggtqc.plugins.hallucination import DEFAULTS as HALLUCINATION_DEFAULTS
from ggtqc.plugins.hallucination import Hallucination
from ggtqc.runner import Stage, score_batch


def scores(cls, lq, hq):
    out = cls().score(Batch(["p"], [np.ascontiguousarray(lq)], [np.ascontiguousarray(hq)]))
    values = out.values if isinstance(out, Scores) else out
    return {k: v[0] for k, v in values.items()}


def fails(cls, got):
    return failing_fields(cls, got)


@pytest.fixture(scope="module")
def scene():
    return cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)  # coffee


def retoned(image, gamma=1.05):
    return np.clip(255 * (image / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)


# --- geometry --------------------------------------------------------------------------


def warp(image, matrix):
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def test_geometry_accepts_a_retoned_target_shifted_by_a_pixel(scene):
    hq = warp(retoned(scene), np.float32([[1, 0, 1], [0, 1, 0]]))
    got = scores(Geometry, degrade.haze(scene), hq)
    assert got["displacement_px"] < 2 and got["mirror_gain"] == 0 and got["correlation"] > 0.8
    assert fails(Geometry, got) == []


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
    assert "displacement_px" in fails(Geometry, got)
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
    assert got["mirror_gain"] > 0.3 and "mirror_gain" in fails(Geometry, got)


@pytest.mark.parametrize("seed", [3, 8, 22])
def test_geometry_aligns_an_honest_target_of_a_scratched_photo(seed):
    # With scratches and dust together, phase correlation gives these pairs a wrong shift, and
    # ECC started there read them as moved 69, 29 and 47 px; from no move it aligns.
    hq = cv2.resize(photos()[3], (480, 320), interpolation=cv2.INTER_AREA)  # rocket
    lq = planted.old_photo_shifted(cv2.resize(hq, (240, 160), interpolation=cv2.INTER_AREA), np.random.default_rng(seed))
    got = scores(Geometry, lq, hq)
    assert got["displacement_px"] < 3 and got["correlation"] > 0.5
    assert fails(Geometry, got) == []


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
    assert got["displacement_px"] < 3 and fails(Geometry, got) == [], got


# --- color -----------------------------------------------------------------------------


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
def test_color_accepts_honest_restorations(scene, group):
    got = scores(Color, getattr(degrade, group)(scene), retoned(scene))
    assert fails(Color, got) == [], got


def test_color_undoes_a_tone_curve_applied_per_channel(scene):
    dark = np.clip((scene / 255.0) ** 2.6 * 0.3 * 255 + 0.5, 0, 255).astype(np.uint8)  # a camera's curve, channel by channel
    got = scores(Color, dark, scene)
    assert got["hue_shift_deg"] < 3 and got["cast"] < 3, got


def test_color_ignores_the_hues_of_noise_on_a_grey_photo(scene):
    grey = np.repeat(cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    small = cv2.resize(grey, (160, 107), interpolation=cv2.INTER_AREA).astype(np.float64)
    lq = np.clip(small * 0.3 + np.random.default_rng(1).normal(0, 8, small.shape), 0, 255).astype(np.uint8)
    got = scores(Color, lq, grey)
    assert got["lq_free_chroma"] >= 4  # the noise has colour, so the photo is judged
    assert fails(Color, got) == [] and (math.isnan(got["hue_shift_deg"]) or got["hue_shift_deg"] < 3), got


def test_color_judges_faint_but_clean_colour_behind_haze():
    clear = cv2.resize(photos()[0], (480, 320), interpolation=cv2.INTER_AREA)  # astronaut: flag, suit, sky
    hazy = (clear * 0.3 + 0.7 * 230).astype(np.uint8)
    honest, shifted = scores(Color, hazy, clear), scores(Color, hazy, in_lab(clear, rotate_hue(30)))
    assert honest["lq_free_chroma"] < 4 and fails(Color, honest) == [], honest
    assert "hue_shift_deg" in fails(Color, shifted), shifted


@pytest.mark.parametrize("factor", [1, 4])  # at 4x the LQ's grain is barely pooled: only colour above it counts
def test_color_skips_a_sepia_source(scene, factor):
    small = cv2.resize(scene, (480 // factor, 320 // factor), interpolation=cv2.INTER_AREA)
    got = scores(Color, degrade.old_photo(small), scene)
    assert math.isnan(got["hue_shift_deg"]) and math.isnan(got["cast"]) and math.isnan(got["saturation"])
    assert got["lq_free_chroma"] < 4 and got["contrast"] > 0.9 and fails(Color, got) == [], got  # its tone is still compared


@pytest.mark.parametrize("group", ["mixed", "haze", "rain", "snow", "old_photo"])  # not low light: below
def test_color_flags_a_faded_target_that_keeps_enough_tonal_range_to_pass_artifacts(scene, group):
    faded = (scene * 0.15 + 190).astype(np.uint8)  # a range of ~38 grey levels
    lq = getattr(degrade, group)(scene)
    got = scores(Color, lq, faded)
    assert "contrast" in fails(Color, got), got
    assert "tonal_range" not in fails(Artifacts, scores(Artifacts, lq, faded))


def test_color_contrast_is_relative_to_the_source(scene):
    dark = degrade.low_light(scene)  # a dark source has little contrast to keep, so fading it is not seen
    assert scores(Color, dark, (scene * 0.15 + 190).astype(np.uint8))["contrast"] > 0.5
    assert scores(Color, dark, scene)["contrast"] > 2


def test_color_measures_a_hue_rotation(scene):
    got = scores(Color, degrade.mixed(scene), in_lab(scene, rotate_hue(30)))
    assert got["hue_shift_deg"] == pytest.approx(30, abs=6) and "hue_shift_deg" in fails(Color, got)


def test_color_measures_a_cast(scene):
    def cast(lab):
        lab[..., 1] -= 15  # towards green, across the coffee's orange

    got = scores(Color, degrade.haze(scene), in_lab(scene, cast))
    assert 6.5 < got["cast"] < 20 and "cast" in fails(Color, got)  # measured short: part reads as saturation


def desaturated(keep):
    def change(lab):
        lab[..., 1:] *= keep

    return change


@pytest.mark.parametrize("group", ["mixed", "haze", "low_light", "rain", "snow"])
def test_color_flags_a_target_that_drops_the_colour(scene, group):
    lq = getattr(degrade, group)(scene)
    grey = np.repeat(cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    for target in (grey, in_lab(scene, desaturated(0.35))):
        got = scores(Color, lq, target)
        assert got["saturation"] < 0.45 and fails(Color, got) == ["saturation"], got
    kept = scores(Color, lq, retoned(scene))["saturation"]  # an honest target keeps it, or raises it behind a veil
    assert 0.8 < kept < (2.5 if group in ("haze", "snow") else 1.25)


# --- hallucination ---------------------------------------------------------------------

BOX = (slice(100, 190), slice(300, 420))  # rows, columns of the planted region


def pasted(scene):
    hq = scene.copy()
    hq[BOX] = cv2.resize(photos()[0][180:330, 160:360], (120, 90))  # a face on the table
    return hq


def test_hallucination_finds_a_pasted_object_and_shows_where(scene):
    lq = degrade.mixed(scene)
    honest = Hallucination().score(Batch(["p"], [lq], [scene]))
    faulty = Hallucination().score(Batch(["p"], [lq], [pasted(scene)]))
    assert honest.values["added"][0] < 0.4 < faulty.values["added"][0]
    heatmap = faulty.heatmaps[0]
    assert heatmap.shape[1] > heatmap.shape[0]  # the LQ's aspect
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    h, w = heatmap.shape
    assert 100 / 320 <= (y + 0.5) / h <= 190 / 320 and 300 / 480 <= (x + 0.5) / w <= 420 / 480


def test_hallucination_finds_text(scene):
    hq = scene.copy()
    cv2.putText(hq, "HOTEL OPEN", (40, 290), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 4, cv2.LINE_AA)
    assert scores(Hallucination, degrade.mixed(scene), hq)["added"] > 0.4


@pytest.mark.parametrize("group", ["mixed", "haze", "low_light", "rain", "snow", "old_photo"])
def test_hallucination_accepts_honest_restorations(scene, group):
    got = scores(Hallucination, getattr(degrade, group)(scene), retoned(scene))
    assert fails(Hallucination, got) == [], got


def blurred_noisy_jpeg(image, seed=0):
    rng = np.random.default_rng(seed)
    noisy = cv2.GaussianBlur(image, (0, 0), 1.8) + rng.normal(0, 12, image.shape)
    return jpeg(np.clip(noisy, 0, 255).astype(np.uint8), 25)


@pytest.mark.parametrize("photo", [3, 5])
def test_hallucination_compares_a_4x_pair_where_the_small_source_holds_its_content(photo):
    # A 120x80 source, blurred, noisy and compressed at its own pixels: compared there, the
    # target's honest detail read as added (0.42-0.48). Pooled 2x2 it does not; an object
    # pasted into the target still does.
    clean = cv2.resize(photos()[photo], (480, 320), interpolation=cv2.INTER_AREA)
    lq = blurred_noisy_jpeg(cv2.resize(clean, (120, 80), interpolation=cv2.INTER_AREA))
    assert fails(Hallucination, scores(Hallucination, lq, retoned(clean))) == []
    assert "added" in fails(Hallucination, scores(Hallucination, lq, pasted(clean)))


@pytest.mark.parametrize("group", ["mixed", "rain", "snow", "low_light"])
def test_hallucination_finds_erased_content_under_weather_and_shows_where(scene, group):
    lq = getattr(degrade, group)(scene)
    mask = np.zeros(scene.shape[:2], np.uint8)
    mask[40:200, 80:260] = 255  # the cup
    erased = cv2.inpaint(scene, mask, 5, cv2.INPAINT_TELEA)
    honest = Hallucination().score(Batch(["p"], [lq], [retoned(scene)]))
    faulty = Hallucination().score(Batch(["p"], [lq], [erased]))
    assert honest.values["removed"][0] < HALLUCINATION_DEFAULTS["removed"] < faulty.values["removed"][0]
    heatmap = faulty.heatmaps[0]
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    h, w = heatmap.shape
    assert 40 / 320 <= (y + 0.5) / h <= 200 / 320 and 80 / 480 <= (x + 0.5) / w <= 260 / 480


@pytest.mark.parametrize("photo, seed", [(2, 3), (3, 2)])
def test_hallucination_reads_snow_flakes_over_detail_as_weather(photo, seed):
    # Each flake raised its neighbourhood's mean, so the fur or the lattice around it read as
    # darker than the fit, as if lost: the rocket's honest pair scored 0.08 and the cat's
    # erasure 0.03. The LQ's bright specks that the HQ lacks are now set aside first.
    clean = cv2.resize(photos()[photo], (480, 320), interpolation=cv2.INTER_AREA)
    lq = planted.snow(cv2.resize(clean, (240, 160), interpolation=cv2.INTER_AREA), np.random.default_rng(seed))
    erased, _ = planted.removed_content(clean, planted.Context(lq, clean, np.random.default_rng(seed)), "clear")
    assert fails(Hallucination, scores(Hallucination, lq, retoned(clean))) == []
    assert "removed" in fails(Hallucination, scores(Hallucination, lq, erased))


@pytest.mark.parametrize("seed", [0, 2])
def test_hallucination_counts_a_4x_sources_flakes_in_its_own_pixels(seed):
    # A 120x80 snowy source is pooled to 60x40 only: its flakes, up to 7 px across, stay
    # wider than 3 analysis px. Left in, they read as lost content (removed 0.048, replaced
    # 0.85 on these honest pairs); set aside as specks of up to 6 LQ px, they do not.
    clean = cv2.resize(photos()[1], (480, 320), interpolation=cv2.INTER_AREA)
    lq = planted.snow(cv2.resize(clean, (120, 80), interpolation=cv2.INTER_AREA), np.random.default_rng(seed))
    erased, _ = planted.removed_content(clean, planted.Context(lq, clean, np.random.default_rng(seed)), "clear")
    assert fails(Hallucination, scores(Hallucination, lq, retoned(clean))) == []
    assert "removed" in fails(Hallucination, scores(Hallucination, lq, erased))


def test_hallucination_finds_content_erased_from_a_blurred_2x_source():
    # At the analysis size this source's detail is coarser than the 1.5-px fit's window:
    # measured against that fit alone, the erased patch read 0.03. The 3-px fit sees it.
    clean = photos()[1][50:350, 150:450]
    lq = blurred_noisy_jpeg(cv2.resize(clean, (150, 150), interpolation=cv2.INTER_AREA))
    erased, (y, x, h, w) = planted.removed_content(clean, planted.Context(lq, clean, np.random.default_rng(0)), "clear")
    honest = scores(Hallucination, lq, retoned(clean))
    faulty = Hallucination().score(Batch(["p"], [lq], [erased]))
    assert honest["removed"] < 0.02 and faulty.values["removed"][0] > 0.09
    heatmap = faulty.heatmaps[0]
    peak_y, peak_x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert y <= (peak_y + 0.5) / heatmap.shape[0] * 300 <= y + h and x <= (peak_x + 0.5) / heatmap.shape[1] * 300 <= x + w


@pytest.mark.parametrize("group", ["mixed", "rain", "haze", "old_photo"])
def test_hallucination_finds_a_faint_object_that_added_alone_does_not_reach(scene, group):
    lq = getattr(degrade, group)(scene)
    hq = scene.copy()
    face = cv2.resize(photos()[0][180:330, 160:360], (65, 50)).astype(np.float32)
    hq[30:80, 350:415] = (0.7 * hq[30:80, 350:415] + 0.3 * face).astype(np.uint8)  # a ghost of a face on the table
    honest = scores(Hallucination, lq, retoned(scene))
    faulty = Hallucination().score(Batch(["p"], [lq], [hq]))
    got = {name: values[0] for name, values in faulty.values.items()}
    assert honest["replaced"] < 0.7 < got["replaced"] and got["added"] < HALLUCINATION_DEFAULTS["added"], got
    assert "replaced" in fails(Hallucination, got)  # "removed" reaches it too in some groups (0.045 mixed), not in others (0.029 haze)
    y, x = np.unravel_index(np.argmax(faulty.heatmaps[0]), faulty.heatmaps[0].shape)
    h, w = faulty.heatmaps[0].shape
    assert 30 / 320 <= (y + 0.5) / h <= 80 / 320 and 350 / 480 <= (x + 0.5) / w <= 415 / 480


# --- artifacts -------------------------------------------------------------------------


def jpeg(image, quality):
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


ARTIFACT_FAULTS = {
    "blockiness": lambda s: jpeg(s, 8),
    "noise": lambda s: np.clip(s + np.random.default_rng(0).normal(0, 15, s.shape), 0, 255).astype(np.uint8),
    "halo": lambda s: np.clip(s + 2.5 * (s - cv2.GaussianBlur(s.astype(np.float32), (0, 0), 2.0)), 0, 255).astype(np.uint8),
    "detail": lambda s: cv2.GaussianBlur(cv2.bilateralFilter(cv2.bilateralFilter(s, 9, 60, 7), 9, 60, 7), (0, 0), 1.2),
}


@pytest.mark.parametrize("field", list(ARTIFACT_FAULTS))
def test_artifacts_catch_each_fault_in_its_own_field(scene, field):
    lq = degrade.mixed(scene)
    got = scores(Artifacts, lq, ARTIFACT_FAULTS[field](scene))
    assert field in fails(Artifacts, got), got
    assert fails(Artifacts, scores(Artifacts, lq, scene)) == []


def contrast(image, gain):
    return np.clip((image.astype(np.float32) - 128) * gain + 128, 0, 255).astype(np.uint8)


def test_halo_is_judged_where_edges_have_room_to_overshoot():
    # Blown white suit on black space: sharpening cannot overshoot either plateau there.
    clipped = contrast(cv2.resize(photos()[0], (480, 480), interpolation=cv2.INTER_AREA), 1.6)
    lq = degrade.mixed(clipped)
    assert "halo" not in fails(Artifacts, scores(Artifacts, lq, clipped))
    assert "halo" in fails(Artifacts, scores(Artifacts, lq, ARTIFACT_FAULTS["halo"](clipped)))


def test_halo_does_not_judge_a_mostly_clipped_star_field_on_its_stars():
    stars = contrast(cv2.resize(photos()[4], (480, 480), interpolation=cv2.INTER_AREA), 1.6)
    assert "halo" not in fails(Artifacts, scores(Artifacts, degrade.mixed(stars), stars))


@pytest.mark.parametrize(
    "group,interpolation,factor",
    [
        ("mixed", cv2.INTER_CUBIC, 2),
        ("rain", cv2.INTER_LANCZOS4, 2),
        ("snow", cv2.INTER_LINEAR, 2),
        ("rain", cv2.INTER_LINEAR, 4),  # the bilinear round trip blurs thin streaks most at 4x
        ("mixed", cv2.INTER_CUBIC, 4),
    ],
)
def test_artifacts_flag_a_target_that_is_the_lq_upscaled(scene, group, interpolation, factor):
    size = (480, 320)
    lq = getattr(degrade, group)(cv2.resize(scene, (480 // factor, 320 // factor), interpolation=cv2.INTER_AREA))
    got = scores(Artifacts, lq, cv2.resize(lq, size, interpolation=interpolation))
    assert got["change"] < 1 and "change" in fails(Artifacts, got)
    restored = scores(Artifacts, lq, cv2.resize(scene, size, interpolation=cv2.INTER_AREA))
    assert "change" not in fails(Artifacts, restored), restored


def sparse_rain(image, count, seed=0):
    """Thin, faint streaks, few of them: the LQ of a 4x pair with light rain."""
    rng = np.random.default_rng(seed)
    streaks = np.zeros(image.shape[:2], np.float32)
    for y, x in zip(rng.integers(0, image.shape[0], count), rng.integers(0, image.shape[1], count)):
        cv2.line(streaks, (int(x), int(y)), (int(x) + 2, int(y) + 12), 1.0, 1)
    streaks = cv2.GaussianBlur(streaks, (0, 0), 0.8)[..., None] * 0.5
    return np.clip(image * (1 - streaks) + 235 * streaks, 0, 255).astype(np.uint8)


def test_a_4x_target_with_thin_rain_removed_counts_as_restored():
    # A bilinear 4x round trip blurs thin streaks as much as removing them does, unless
    # the comparison leaves out the finest band.
    photo = photos()[0]
    lq = sparse_rain(cv2.resize(photo, (90, 90), interpolation=cv2.INTER_AREA), 30)
    clean = cv2.resize(photo, (360, 360), interpolation=cv2.INTER_AREA)
    assert "change" not in fails(Artifacts, scores(Artifacts, lq, clean))
    upscaled = cv2.resize(lq, (360, 360), interpolation=cv2.INTER_LINEAR)
    assert "change" in fails(Artifacts, scores(Artifacts, lq, upscaled))


@pytest.mark.parametrize(
    "target",
    [
        lambda s: np.full_like(s, 255),  # blank
        lambda s: (s * 0.08).astype(np.uint8),  # blacked out
        lambda s: (s * 0.08 + 215).astype(np.uint8),  # washed out
    ],
    ids=["blank", "dark", "washed_out"],
)
def test_artifacts_flag_a_target_that_lost_the_tonal_range(scene, target):
    got = scores(Artifacts, degrade.mixed(scene), target(scene))
    assert "tonal_range" in fails(Artifacts, got), got


def test_a_night_scene_restored_from_snow_keeps_its_tonal_range(scene):
    night = (scene * 0.25).astype(np.uint8)
    assert "tonal_range" not in fails(Artifacts, scores(Artifacts, degrade.snow(night), night))


# --- all four --------------------------------------------------------------------------


def test_geometry_does_not_estimate_a_blank_frame(scene):
    got = scores(Geometry, degrade.mixed(scene), np.full_like(scene, 255))
    assert all(math.isnan(v) for v in got.values()), got


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
