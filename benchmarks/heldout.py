"""Held-out pairs: degradations, restoration styles and photos that no threshold was set on.

    python -m benchmarks.heldout                       # writes benchmarks/results/heldout.md
    python -m benchmarks.heldout --per-photo 3 --seeds 0,1 --out /tmp/h.md

``planted.py`` is the calibration set: six degradation groups, honest targets that are the
clean photo re-toned, faults planted on them. This set is made otherwise, from the failure
classes users reported and two degradations of its own, on other photos, and is used to
check the defaults only: never to set or move a threshold.

Honest families (the target is a faithful restoration, and should be accepted):

- ``cast_haze``: bluish airlight over the frame; the target removes it (and its cast).
- ``cast_low_light``: a dark frame under a green or an orange light, with colour noise; the
  target is the scene in neutral light.
- ``cast_old_print``: a faded colour print gone yellow, with grain; the target restores it.
- ``sharpened``: a blurred, compressed source; the target is crisp, an unsharp mask of
  amount 0.3-0.7, as GAN super-resolution and generative restorers make it.
- ``super_resolution``: 2x or 4x, a lightly degraded small source; the target's new detail
  lives at its own scale and vanishes at the LQ's.
- ``resynthesised``: textured areas of the target (grass, fur, fabric) redrawn with a
  sub-pixel wobble and their finest grain drawn anew.
- ``halftone`` (own): a printed, screened source (dot screen per ink) that the target
  descreens.
- ``chromatic`` (own): lateral chromatic aberration (colour fringes growing toward the
  corners) and defocus, which the target corrects.

Fault kinds (each named as the review tags name them; ``expect_fields`` lists the filter
fields that should fire, so the benchmark checks the reason as well as the verdict):

- ``plastic``: edge-preserving smoothing (a wax, cartoon or oil-paint look) that wipes the
  fine texture the LQ shows while keeping strong edges.
- ``over_sharpened``: strong halos or ringing (unsharp amount 2-3.5, or a sinc overshoot).
- ``artifacts``: the LQ's JPEG block grid amplified into hard tile edges every 8 x scale px.
- ``not_restored``: at 2x and 4x, the LQ upscaled (bicubic, perhaps sharpened or denoised).
- ``colour_shift``: a global cast added to a neutral source, a cast over-corrected past
  neutral, or one object recoloured.
- ``hallucinated_object``: an object of the scene duplicated elsewhere in the frame.
- ``text_changed``: a sign whose text the target rewrites.

Photos (none of them in either split of ``planted.py``): scikit-image's motorcycle (the
left view of its stereo pair), immunohistochemistry and retina, and ``garden``, a scene
composed here from scikit-image's grass, brick and gravel textures, tinted.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import click
import cv2
import numpy as np
from skimage import data

from ggtqc.results import RESULTS
from ggtqc.rowlog import read_rows

from benchmarks.accuracy import GGTQC, WEIGHTS_FREE, share
from ggtqc.calibrate import wilson

PHOTOS = ("motorcycle", "immunohistochemistry", "retina", "garden")
HONEST = ("cast_haze", "cast_low_light", "cast_old_print", "sharpened", "super_resolution", "resynthesised", "halftone", "chromatic")
FAULTS = ("plastic", "over_sharpened", "artifacts", "not_restored", "colour_shift", "hallucinated_object", "text_changed")
# The fields that should reject each fault kind; any one of them firing gives the right reason.
EXPECT = {
    "plastic": ("artifacts.detail", "artifacts.texture"),
    "over_sharpened": ("artifacts.halo",),
    "artifacts": ("artifacts.blockiness",),
    "not_restored": ("artifacts.change",),
    "colour_shift": ("color.cast", "color.hue_shift_deg", "color.local", "color.saturation"),
    "hallucinated_object": ("hallucination.added", "hallucination.removed", "hallucination.replaced"),
    "text_changed": ("hallucination.added", "hallucination.removed", "hallucination.replaced"),
}
# Scales each case is drawn from.
SCALES = {
    "super_resolution": (2, 4), "not_restored": (2, 4), "artifacts": (2, 4), "plastic": (1, 2, 4),
}  # fmt: skip
DEFAULT_SCALES = (1, 2)
WORDS = ("BAKERY", "GARAGE", "MUSEUM", "TICKETS", "BISTRO", "PHARMACY", "LIBRARY", "STATION")


# --- photos --------------------------------------------------------------------------


def photo(name: str) -> np.ndarray:
    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    if name == "retina":
        image = data.retina()
        return cv2.resize(image[200:1200, 200:1200], (700, 700), interpolation=cv2.INTER_AREA)
    if name == "garden":
        return garden()
    return getattr(data, name)()


def garden() -> np.ndarray:
    """Brick above grass above gravel, each tinted, joined by soft, wavy borders (512 x 768)."""
    h, w = 512, 768
    textures = [cv2.resize(getattr(data, n)(), (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255 for n in ("brick", "grass", "gravel")]
    tints = [np.array([0.85, 0.42, 0.30]), np.array([0.35, 0.72, 0.25]), np.array([0.78, 0.70, 0.55])]
    layers = [t[..., None] * tint * 1.25 + 0.05 for t, tint in zip(textures, tints)]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    first = h * 0.33 + 12 * np.sin(xx / 57)
    second = h * 0.7 + 15 * np.sin(xx / 83 + 1)
    a = np.clip((yy - first) / 6 + 0.5, 0, 1)[..., None]
    b = np.clip((yy - second) / 6 + 0.5, 0, 1)[..., None]
    image = layers[0] * (1 - a) + layers[1] * a * (1 - b) + layers[2] * b
    cv2.circle(image, (int(w * 0.7), int(h * 0.55)), 40, (0.85, 0.12, 0.10), -1, cv2.LINE_AA)  # a red ball
    cv2.circle(image, (int(w * 0.7) - 12, int(h * 0.55) - 14), 10, (1.0, 0.6, 0.55), -1, cv2.LINE_AA)
    return np.clip(image * 255, 0, 255).astype(np.uint8)


# --- helpers -------------------------------------------------------------------------


def _u8(image) -> np.ndarray:
    return np.clip(np.asarray(image, np.float64) + 0.5, 0, 255).astype(np.uint8)


def _noise(image, sigma, rng, colour=True):
    shape = image.shape if colour else image.shape[:2] + (1,)
    return _u8(np.asarray(image, np.float64) + rng.normal(0, sigma, shape))


def _jpeg(image, quality):
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def _blur(image, sigma):
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image


def unsharp(image, amount, sigma):
    image = image.astype(np.float32)
    return _u8(image + amount * (image - cv2.GaussianBlur(image, (0, 0), sigma)))


def lab_shift(image, da, db):
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    lab[..., 1] += da
    lab[..., 2] += db
    return _u8(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255)


def mean_ab(image) -> np.ndarray:
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    return lab[..., 1:].reshape(-1, 2).mean(axis=0)


# --- degradations: clean crop at LQ size -> LQ ----------------------------------------


def haze_blue(image, rng):
    airlight = np.array([rng.uniform(150, 190), rng.uniform(180, 210), rng.uniform(225, 250)])
    veil = np.linspace(rng.uniform(0.35, 0.55), rng.uniform(0.2, 0.35), image.shape[0])[:, None, None]
    return _noise(image * (1 - veil) + airlight * veil, rng.uniform(1.5, 3), rng)


def low_light_tint(image, rng):
    dark = (image / 255.0) ** rng.uniform(1.5, 2.1) * rng.uniform(0.22, 0.38) * 255
    tint = np.array([0.65, 1.0, 0.7]) if rng.random() < 0.5 else np.array([1.0, 0.72, 0.42])  # green or orange light
    dark = dark * tint * rng.uniform(0.9, 1.1, 3)
    noisy = dark + rng.normal(0, rng.uniform(1.5, 3.5), dark.shape) + rng.normal(0, 1.5, dark.shape[:2])[..., None]
    return _u8(noisy)


def old_print_yellow(image, rng):
    x = image.astype(np.float64)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.5, 0.8)  # faded dyes
    fade = rng.uniform(0.2, 0.4)
    x = x * (1 - fade) + np.array([235, 225, 190]) * fade  # toward a cream base
    x = x * np.array([1.0, rng.uniform(0.9, 0.97), rng.uniform(0.68, 0.82)])  # yellowed
    x = _blur(_u8(x), rng.uniform(0.6, 1.0))
    return _noise(x, rng.uniform(3, 6), rng, colour=False)


def jpeg_mild(image, rng):
    return _jpeg(_noise(_blur(image, rng.uniform(0.4, 0.9)), rng.uniform(2, 4), rng), rng.uniform(45, 75))


def blur_jpeg(image, rng):
    return _jpeg(_noise(_blur(image, rng.uniform(1.0, 1.6)), rng.uniform(2, 5), rng), rng.uniform(30, 60))


def sr_source(image, rng):
    """What a super-resolution source looks like: barely degraded at its own scale."""
    return _jpeg(_blur(image, rng.uniform(0.3, 0.6)), rng.uniform(70, 90))


def halftone(image, rng):
    """A printed screen: one dot grid per ink (C, M, Y), rotated apart, then a scanner's blur."""
    h, w = image.shape[:2]
    period = rng.uniform(3.0, 4.5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ink = 1 - image.astype(np.float64) / 255  # C, M, Y coverage from R, G, B
    out = np.empty_like(ink)
    for c, angle in enumerate(np.deg2rad([15, 75, 0]) + rng.uniform(0, 0.3)):
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        screen = (np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period) + 2) / 4  # 0..1
        out[..., c] = np.clip((ink[..., c] - screen) * 6 + 0.5, 0, 1)  # a dot grows with the ink
    printed = _u8((1 - out) * 255)
    return _noise(_blur(printed, rng.uniform(0.7, 1.0)), 2, rng)


def chromatic(image, rng):
    """Lateral chromatic aberration (red and blue scaled apart about the centre) and defocus."""
    h, w = image.shape[:2]
    spread = rng.uniform(0.006, 0.012) * (1 if rng.random() < 0.5 else -1)
    out = image.copy()
    for c, factor in ((0, 1 + spread), (2, 1 - spread)):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0, factor)
        out[..., c] = cv2.warpAffine(image[..., c], matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    radius = rng.uniform(1.2, 2.2)
    size = int(2 * math.ceil(radius) + 1)
    disk = np.zeros((size, size), np.float32)
    cv2.circle(disk, (size // 2, size // 2), int(round(radius)), 1.0, -1)
    out = cv2.filter2D(out, -1, disk / disk.sum(), borderType=cv2.BORDER_REFLECT)
    return _jpeg(_noise(out, 2, rng), 80)


def jpeg_heavy(image, rng):
    return _jpeg(_blur(image, rng.uniform(0.3, 0.7)), rng.uniform(12, 25))


DEGRADE = {
    "cast_haze": haze_blue, "cast_low_light": low_light_tint, "cast_old_print": old_print_yellow,
    "sharpened": blur_jpeg, "super_resolution": sr_source, "resynthesised": jpeg_mild,
    "halftone": halftone, "chromatic": chromatic,
}  # fmt: skip
# LQs a fault is planted over: neutral ones for colour, ones that show texture for plastic.
FAULT_DEGRADE = {
    "plastic": ("jpeg_mild", "chromatic", "sr_source"),
    "over_sharpened": ("jpeg_mild", "blur_jpeg", "chromatic"),
    "artifacts": ("jpeg_heavy",),
    "not_restored": ("jpeg_mild", "blur_jpeg", "chromatic", "halftone"),
    "colour_shift": ("jpeg_mild", "blur_jpeg", "chromatic", "haze_blue", "low_light_tint"),
    "hallucinated_object": ("jpeg_mild", "blur_jpeg", "haze_blue", "low_light_tint", "halftone", "chromatic"),
    "text_changed": ("jpeg_mild", "blur_jpeg", "haze_blue", "chromatic"),
}
DEGRADATIONS = {f.__name__: f for f in (haze_blue, low_light_tint, old_print_yellow, jpeg_mild, blur_jpeg, sr_source, halftone, chromatic, jpeg_heavy)}


# --- restoration styles: clean crop at HQ size -> HQ --------------------------------------


def retone(image, rng):
    x = (image.astype(np.float64) / 255) ** rng.uniform(0.95, 1.05)
    return _u8(x * 255)


def textured(image, quantile=60):
    """Where the image has fine texture: local energy of its finest band above the ``quantile``."""
    y = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    fine = y - cv2.GaussianBlur(y, (0, 0), 1.5)
    energy = cv2.GaussianBlur(fine * fine, (0, 0), 6)
    return cv2.GaussianBlur((energy > np.percentile(energy, quantile)).astype(np.float32), (0, 0), 4)


def resynthesise(image, rng, scale):
    """Textured areas redrawn: a smooth random wobble of up to ~1 px and fresh fine grain."""
    h, w = image.shape[:2]
    mask = textured(image)
    amplitude = rng.uniform(0.5, 1.2) * max(1, scale / 2)
    field = [cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 4 * scale) for _ in range(2)]
    field = [f / (f.std() + 1e-6) * amplitude * mask for f in field]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    wobbled = cv2.remap(image, xx + field[0], yy + field[1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    grain = cv2.GaussianBlur(rng.normal(0, rng.uniform(3, 6), (h, w)).astype(np.float32), (0, 0), 0.7)
    return _u8(wobbled + (grain * mask)[..., None])


# --- faults: honest HQ -> faulty HQ, with a variant name -----------------------------


def plastic(hq, lq, rng, scale):
    kind = ["wax", "cartoon", "oil"][int(rng.integers(3))]
    if kind == "wax":
        out = cv2.edgePreservingFilter(hq, flags=cv2.RECURS_FILTER, sigma_s=rng.uniform(40, 80), sigma_r=rng.uniform(0.25, 0.4))
    elif kind == "cartoon":
        out = cv2.pyrMeanShiftFiltering(hq, rng.uniform(6, 10), rng.uniform(20, 32))
    else:
        out = hq
        for _ in range(4):
            out = cv2.bilateralFilter(out, 9, rng.uniform(35, 50), 5)
    return out, kind


def over_sharpened(hq, lq, rng, scale):
    if rng.random() < 0.5:
        return unsharp(hq, rng.uniform(2.0, 3.5), rng.uniform(1.5, 2.5)), "unsharp"
    # ringing: boost of the band just under an ideal (sinc) cutoff, which oscillates beside edges
    x = hq.astype(np.float32)
    h, w = x.shape[:2]
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    cutoff = rng.uniform(0.12, 0.2)
    ideal = (np.hypot(fy, fx) < cutoff).astype(np.float32)
    low = np.stack([np.real(np.fft.ifft2(np.fft.fft2(x[..., c]) * ideal)) for c in range(3)], axis=2)
    smooth = cv2.GaussianBlur(x, (0, 0), 0.25 / cutoff)
    return _u8(x + rng.uniform(1.5, 2.5) * (low - smooth)), "ringing"


def amplified_grid(hq, lq, rng, scale):
    """The LQ's 8-px block means as hard tiles: piecewise-constant block means less their smooth version."""
    h, w = lq.shape[:2]
    bh, bw = h // 8, w // 8
    lqf = lq[: bh * 8, : bw * 8].astype(np.float32)
    means = lqf.reshape(bh, 8, bw, 8, 3).mean(axis=(1, 3))
    tiles = cv2.resize(means, (bw * 8 * scale, bh * 8 * scale), interpolation=cv2.INTER_NEAREST)
    smooth = cv2.resize(means, (bw * 8 * scale, bh * 8 * scale), interpolation=cv2.INTER_LINEAR)
    grid = np.zeros(hq.shape, np.float32)
    grid[: tiles.shape[0], : tiles.shape[1]] = tiles - smooth
    return _u8(hq + rng.uniform(0.7, 1.2) * grid), "tiles"


def not_restored(hq, lq, rng, scale):
    out = lq
    kind = ["bicubic", "sharpened", "denoised"][int(rng.integers(3))]
    if kind == "denoised":
        out = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(lq), None, 5, 5, 5, 15)
    out = cv2.resize(out, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_CUBIC)
    if kind == "sharpened":
        out = unsharp(out, 0.5, scale * 0.8)
    return out, kind


def colour_shift(hq, lq, rng, scale, lq_cast=None):
    if lq_cast is not None and np.hypot(*lq_cast) > 3:  # the source has a cast: correct it past neutral
        away = -lq_cast / np.hypot(*lq_cast) * rng.uniform(10, 16)
        return lab_shift(hq, *away), "overcorrected"
    if rng.random() < 0.5:
        direction = rng.uniform(0, 2 * np.pi)
        amount = rng.uniform(12, 20)
        return lab_shift(hq, amount * np.cos(direction), amount * np.sin(direction)), "cast"
    return recolour_object(hq, rng), "object"


def recolour_object(hq, rng):
    """The most colourful blob of ~6-12% of the frame turned 70-150 degrees round the hue circle."""
    lab = cv2.cvtColor(hq.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    h, w = hq.shape[:2]
    chroma = cv2.GaussianBlur(np.hypot(lab[..., 1], lab[..., 2]), (0, 0), max(h, w) / 12)
    cy, cx = np.unravel_index(int(np.argmax(chroma)), chroma.shape)
    area = rng.uniform(0.06, 0.12) * h * w
    ry, rx = int(np.sqrt(area / np.pi) * rng.uniform(0.8, 1.2)), int(np.sqrt(area / np.pi))
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (int(cx), int(cy)), (rx, ry), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 2)
    angle = np.deg2rad(rng.uniform(70, 150) * rng.choice([-1, 1]))
    a, b = lab[..., 1], lab[..., 2]
    turned_a, turned_b = a * np.cos(angle) - b * np.sin(angle), a * np.sin(angle) + b * np.cos(angle)
    boost = 1.0 if np.hypot(a, b)[mask > 0.5].mean() > 12 else 12 / max(float(np.hypot(a, b)[mask > 0.5].mean()), 1.0)
    lab[..., 1] = a * (1 - mask) + turned_a * boost * mask
    lab[..., 2] = b * (1 - mask) + turned_b * boost * mask
    return _u8(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255)


def hallucinated_object(hq, lq, rng, scale):
    """The most detailed patch of ~5-9% of the frame duplicated at the farthest spot that fits."""
    h, w = hq.shape[:2]
    side_h, side_w = int(h * np.sqrt(rng.uniform(0.05, 0.09))), int(w * np.sqrt(rng.uniform(0.05, 0.09)))
    gray = cv2.cvtColor(hq, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = cv2.blur(np.abs(cv2.Laplacian(gray, cv2.CV_32F)), (side_w, side_h))
    inner = energy[side_h // 2 : h - side_h // 2, side_w // 2 : w - side_w // 2]
    sy, sx = np.unravel_index(int(np.argmax(inner)), inner.shape)
    ty = int(rng.integers(0, h - side_h)) if abs(h - side_h - sy) < h / 4 else (h - side_h - sy if sy < h / 2 else int(rng.integers(0, max(1, sy - side_h))))
    tx = w - side_w - sx if abs(w - side_w - 2 * sx) > side_w else (0 if sx > w / 2 else w - side_w)
    ty, tx = int(np.clip(ty, 0, h - side_h)), int(np.clip(tx, 0, w - side_w))
    patch = hq[sy : sy + side_h, sx : sx + side_w].astype(np.float32)
    mask = np.zeros((side_h, side_w), np.float32)
    cv2.ellipse(mask, (side_w // 2, side_h // 2), (side_w // 2 - 1, side_h // 2 - 1), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 2)[..., None]
    out = hq.copy()
    out[ty : ty + side_h, tx : tx + side_w] = _u8(out[ty : ty + side_h, tx : tx + side_w] * (1 - mask) + patch * mask)
    return out, "duplicate"


def add_sign(image, rng, scale, word=None, box=None):
    """A light sign with a dark word on it; returns the image and the sign's box and word."""
    h, w = image.shape[:2]
    word = word or str(rng.choice(WORDS))
    if box is None:
        text_h = max(12 * scale, int(h * rng.uniform(0.07, 0.1)))  # at least 12 LQ px tall
        font = text_h / 22
        (tw, th), _ = cv2.getTextSize(max(WORDS, key=len), cv2.FONT_HERSHEY_SIMPLEX, font, max(1, int(font * 2)))
        sw, sh = min(tw + 2 * text_h // 2, w - 4), th + text_h
        y, x = int(rng.integers(2, h - sh - 2)), int(rng.integers(2, max(3, w - sw - 2)))
        box = (y, x, sh, sw, font)
    y, x, sh, sw, font = box
    out = image.copy()
    cv2.rectangle(out, (x, y), (x + sw, y + sh), (236, 232, 220), -1)
    cv2.rectangle(out, (x, y), (x + sw, y + sh), (60, 60, 60), max(1, scale))
    thickness = max(1, int(font * 2))
    (tw, th), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, font, thickness)
    cv2.putText(out, word, (x + (sw - tw) // 2, y + (sh + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, font, (30, 30, 40), thickness, cv2.LINE_AA)
    return out, box, word


FAULT = {"plastic": plastic, "over_sharpened": over_sharpened, "artifacts": amplified_grid, "not_restored": not_restored,
         "colour_shift": colour_shift, "hallucinated_object": hallucinated_object}  # fmt: skip


# --- pairs ---------------------------------------------------------------------------


def make_pairs(out: Path, per_photo: int = 3, seed: int = 0, photos=PHOTOS) -> list[dict]:
    """Write ``out/lq``, ``out/hq`` and ``out/labels.jsonl``; return the labels.

    Per photo and repeat: one pair of every honest family and one of every fault kind.
    """
    rng = np.random.default_rng(seed + 1000)  # never the same draws as planted.py's seeds
    sources = {name: photo(name) for name in photos}
    cases = [("honest", f) for f in HONEST] + [("fault", f) for f in FAULTS]
    labels = []
    for name, source in sources.items():
        for k in range(per_photo):
            for kind, what in cases:
                scale = int(rng.choice(SCALES.get(what, DEFAULT_SCALES)))
                # HQ crops of 256-352 px on the short side (LQs of 64-88 px at 4x)
                short = int(rng.integers(64, 89) * 4)
                h, w = short, int(short * rng.uniform(1.0, 1.4))
                if rng.random() < 0.3:
                    h, w = w, h
                h, w = min(h, source.shape[0] - 4) // (8 * scale) * 8 * scale, min(w, source.shape[1] - 4) // (8 * scale) * 8 * scale
                y, x = int(rng.integers(0, source.shape[0] - h)), int(rng.integers(0, source.shape[1] - w))
                clean = source[y : y + h, x : x + w]
                if what == "text_changed" or (kind == "honest" and rng.random() < 0.3):
                    clean, box, word = add_sign(clean, rng, scale)
                if kind == "honest":
                    degradation = DEGRADE[what].__name__
                else:
                    options = FAULT_DEGRADE[what]
                    degradation = options[int(rng.integers(len(options)))]
                lq_clean = cv2.resize(clean, (w // scale, h // scale), interpolation=cv2.INTER_AREA) if scale > 1 else clean
                lq = DEGRADATIONS[degradation](lq_clean, rng)
                variant = None
                if kind == "honest":
                    hq = retone(clean, rng)
                    if what == "sharpened":
                        hq = unsharp(hq, rng.uniform(0.3, 0.7), rng.uniform(1.0, 2.0))
                    elif what == "super_resolution" and rng.random() < 0.5:
                        hq = unsharp(hq, 0.3, 1.0)
                    elif what == "resynthesised":
                        hq = resynthesise(hq, rng, scale)
                else:
                    hq = retone(clean, rng)
                    if what == "text_changed":
                        other = str(rng.choice([v for v in WORDS if v != word]))
                        hq, _, _ = add_sign(hq, rng, scale, word=other, box=box)
                        variant = f"{word}->{other}"
                    elif what == "colour_shift":
                        cast = mean_ab(lq) - mean_ab(lq_clean) if degradation in ("haze_blue", "low_light_tint") else None
                        hq, variant = colour_shift(hq, lq, rng, scale, cast)
                    else:
                        hq, variant = FAULT[what](hq, lq, rng, scale)
                pair_id = f"{kind}/{what}/{name}-{k}"
                _save(out / "lq" / f"{pair_id}.png", lq)
                _save(out / "hq" / f"{pair_id}.png", hq)
                label = {"id": pair_id, "kind": kind, "family": what if kind == "honest" else degradation, "what": what,
                         "variant": variant, "degradation": degradation, "scale": scale, "photo": name}  # fmt: skip
                if kind == "fault":
                    label["expect_fields"] = list(EXPECT[what])
                labels.append(label)
    with (out / "labels.jsonl").open("w") as f:
        for label in labels:
            f.write(json.dumps(label) + "\n")
    return labels


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))


# --- the benchmark -------------------------------------------------------------------


def evaluate(per_photo: int, seeds, plugins: str = WEIGHTS_FREE, workdir: Path | None = None) -> list[tuple[dict, dict]]:
    """(label, result row) of every pair of every seed, scored by the real command with every field."""
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            root = (workdir or Path(tmp)) / f"seed{seed}"
            labels = make_pairs(root / "pairs", per_photo, seed)
            command = [str(GGTQC), "filter", str(root / "pairs"), "--plugins", plugins, "--out", str(root / "qc"), "--fresh", "-q", "--all-scores"]
            subprocess.run(command, check=True)
            rows = {row["id"]: row for row in read_rows(root / "qc" / RESULTS)}
            pairs += [({**label, "seed": seed}, rows[label["id"]]) for label in labels]
    return pairs


def rejected(row: dict) -> bool:
    """Caught, for a faulty pair: not accepted (rejected, or sent to a person)."""
    return row["verdict"] != "accept"


def kept(row: dict) -> bool:
    """Kept, for an honest pair: accepted, or sent to a person who can keep it."""
    return row["verdict"] in ("accept", "review")


def flagged(row: dict) -> set[str]:
    """The fields that rejected the pair or sent it to review, and the filters unsure of it."""
    return set(row.get("failed", [])) | set(row.get("review", [])) | {f"{name}." for name in row.get("unsure", {})}


def right_reason(label: dict, row: dict) -> bool:
    expected = set(label["expect_fields"]) | {field.split(".")[0] + "." for field in label["expect_fields"]}
    return rejected(row) and bool(flagged(row) & expected)


def report(pairs: list[tuple[dict, dict]], title: str) -> str:
    honest = [(label, row) for label, row in pairs if label["kind"] == "honest"]
    faults = [(label, row) for label, row in pairs if label["kind"] == "fault"]
    oks = [kept(row) for _, row in honest]
    accepted = sum(row["verdict"] == "accept" for _, row in honest)
    lines = [f"### {title}", "", f"Honest pairs kept (accepted or sent to review): **{sum(oks)}/{len(oks)} = {sum(oks) / len(oks):.3f}**"]
    lines += ["(95% interval {:.3f}-{:.3f}); accepted outright {}/{} = {:.3f}".format(*wilson(sum(oks), len(oks)), accepted, len(oks), accepted / len(oks))]
    caught = [rejected(row) for _, row in faults]
    reviewed = sum(row["verdict"] == "review" for _, row in faults)
    lines += ["", f"Faulty pairs caught (not accepted): {share(caught)}; of them sent to review rather than rejected: {reviewed}.", ""]
    lines += ["| honest family | kept | accepted | in review | by scale (kept) | rejected by | sent to review by |",
              "| --- | ---: | ---: | ---: | --- | --- | --- |"]  # fmt: skip
    for family in HONEST:
        group = [(label, row) for label, row in honest if label["what"] == family]
        n_accept = sum(r["verdict"] == "accept" for _, r in group)
        n_review = sum(r["verdict"] == "review" for _, r in group)
        lines.append(f"| {family} | {share([kept(r) for _, r in group])} | {n_accept} | {n_review} | {by_scale(group, accepted=True)} | {fired(group)} | {reviewed_by(group)} |")
    lines += ["", "| fault | caught | of them in review | for an expected reason | by scale | fields that fired |", "| --- | ---: | ---: | ---: | --- | --- |"]
    for fault in FAULTS:
        group = [(label, row) for label, row in faults if label["what"] == fault]
        right = [right_reason(label, row) for label, row in group]
        n_review = sum(r["verdict"] == "review" for _, r in group)
        lines.append(f"| {fault} | {share([rejected(r) for _, r in group])} | {n_review} | {share(right)} | {by_scale(group, accepted=False)} | {fired(group)} |")
    lines += ["", "By fault variant: caught, for an expected reason.", "", "| fault | variant | caught | expected reason |", "| --- | --- | ---: | ---: |"]
    variants = sorted({(label["what"], label["variant"] if label["what"] != "text_changed" else "text") for label, _ in faults})
    for fault, variant in variants:
        group = [(label, row) for label, row in faults if label["what"] == fault and (label["variant"] == variant or variant == "text")]
        right = [right_reason(label, row) for label, row in group]
        lines.append(f"| {fault} | {variant} | {share([rejected(r) for _, r in group])} | {share(right)} |")
    lines += ["", "By fault and the LQ's degradation: caught.", ""]
    by_degradation = defaultdict(list)
    for label, row in faults:
        by_degradation[(label["what"], label["degradation"])].append(rejected(row))
    lines += [f"- {fault}: " + ", ".join(f"{d} {sum(v)}/{len(v)}" for (f, d), v in sorted(by_degradation.items()) if f == fault) for fault in FAULTS]
    return "\n".join(lines) + "\n"


def by_scale(group, accepted: bool) -> str:
    """Per scale: honest pairs kept (``accepted``) or faulty pairs caught."""
    counts = defaultdict(list)
    for label, row in group:
        counts[label["scale"]].append(kept(row) if accepted else rejected(row))
    return ", ".join(f"{s}x {sum(v)}/{len(v)}" for s, v in sorted(counts.items()))


def fired(group) -> str:
    counts = Counter(name for _, row in group for name in row.get("failed", []))
    return ", ".join(f"{name} ({n})" for name, n in counts.most_common(4))


def reviewed_by(group) -> str:
    counts = Counter(name for _, row in group if row["verdict"] == "review" for name in row.get("review", []))
    return ", ".join(f"{name} ({n})" for name, n in counts.most_common(3))


@click.command()
@click.option("--per-photo", default=3, show_default=True, help="Repeats per photo of every case.")
@click.option("--seeds", default="0,1", show_default=True, help="Seeds of the pairs, pooled, e.g. 0,1.")
@click.option("--plugins", default=WEIGHTS_FREE, show_default=True)
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Keep the pairs and results in this folder.")
@click.option("--out", type=click.Path(path_type=Path), default=Path(__file__).parent / "results" / "heldout.md")
def main(per_photo: int, seeds: str, plugins: str, keep: Path | None, out: Path) -> None:
    seed_list = tuple(int(s) for s in seeds.split(","))
    pairs = evaluate(per_photo, seed_list, plugins, workdir=keep)
    command = f"python -m benchmarks.heldout --per-photo {per_photo} --seeds {seeds}"
    text = "\n".join(["# Detection on held-out families (no threshold set on them)", "", f"`{command}`", "",
                      report(pairs, f"photos: {', '.join(PHOTOS)}")])  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
