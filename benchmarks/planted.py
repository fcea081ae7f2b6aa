"""Planted-fault pairs from real photos, for measuring what the filters catch.

LQ images carry a realistic degradation of one of the six groups (the standard set, on which
thresholds were set, or a shifted set made otherwise, which checks them); honest HQ targets
are the clean photo with the changes a good restoration legitimately makes (a slight
re-tone, a shift of a pixel or so, crisp detail, same size, 2x or 4x); faulty HQ targets
carry one planted fault at a clear or a subtle strength. Every random choice comes from the
seed, and the photos are split so that thresholds can be checked on photos they were not
looked at on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage import data

# Calibration photos and held-out photos: check thresholds on the split they were not set on.
SPLITS = {
    "calibration": ("astronaut", "coffee", "chelsea", "rocket"),
    "heldout": ("sklearn:china", "sklearn:flower", "matplotlib:grace_hopper", "camera"),
}
GROUPS = ("mixed", "rain", "haze", "snow", "low_light", "old_photo")
FAULTS = (
    "hallucinated_object", "hallucinated_text", "removed_content", "color_shift", "geometry",
    "blocking", "noise", "ringing", "oversmoothed", "not_restored",
    "wrong_image", "mirrored", "wrong_resolution",
)  # fmt: skip
# Faults that have no meaningful subtle strength.
CLEAR_ONLY = ("wrong_image", "mirrored", "wrong_resolution")


def photo(name: str) -> np.ndarray:
    """A bundled photo: scikit-image's by name, or scikit-learn's / matplotlib's sample images."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name.split(":")[1] + ".jpg")
    elif name.startswith("matplotlib:"):
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data(name.split(":")[1] + ".jpg") as f:
            image = np.asarray(Image.open(f).convert("RGB"))
    else:
        image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


# --- degradations: clean RGB -> LQ RGB (same size) ------------------------------------


def _noise(image, sigma, rng):
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def _jpeg(image, quality):
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def mixed(image, rng):
    blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.0))
    return _jpeg(_noise(blurred, rng.uniform(4, 14), rng), rng.uniform(20, 50))


def rain(image, rng):
    streaks = np.zeros(image.shape[:2], np.float32)
    count = int(image.size / 3 / 300 * rng.uniform(0.5, 1.5))
    angle = rng.uniform(-0.4, 0.4)
    length = rng.uniform(8, 20)
    for y, x in zip(rng.integers(0, image.shape[0], count), rng.integers(0, image.shape[1], count)):
        dx, dy = int(length * np.sin(angle)), int(length * np.cos(angle))
        cv2.line(streaks, (int(x), int(y)), (int(x) + dx, int(y) + dy), 1.0, 1)
    streaks = cv2.GaussianBlur(streaks, (0, 0), 0.8)[..., None] * rng.uniform(0.4, 0.7)
    return np.clip(image * (1 - streaks) + 235 * streaks, 0, 255).astype(np.uint8)


def haze(image, rng):
    near, far = rng.uniform(0.2, 0.4), rng.uniform(0.5, 0.8)
    depth = np.linspace(far, near, image.shape[0])[:, None, None]
    airlight = rng.uniform(200, 240)
    return (image * (1 - depth) + airlight * depth).astype(np.uint8)


def snow(image, rng):
    flakes = np.zeros(image.shape[:2], np.float32)
    count = int(image.size / 3 / 250 * rng.uniform(0.5, 1.5))
    for y, x, r in zip(rng.integers(0, image.shape[0], count), rng.integers(0, image.shape[1], count), rng.integers(1, 4, count)):
        cv2.circle(flakes, (int(x), int(y)), int(r), 1.0, -1)
    flakes = cv2.GaussianBlur(flakes, (0, 0), 1.0)[..., None]
    veil = image * 0.85 + 255 * 0.15
    return np.clip(veil * (1 - flakes) + 250 * flakes, 0, 255).astype(np.uint8)


def low_light(image, rng):
    dark = (image / 255.0) ** rng.uniform(1.8, 2.6) * rng.uniform(0.15, 0.35) * 255
    return _noise(dark, rng.uniform(2, 6), rng)


def old_photo(image, rng):
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    if rng.random() < 0.5:
        toned = np.stack([gray * 1.07, gray * 0.74, gray * 0.43], axis=2) + 20  # sepia
    else:
        toned = np.repeat(gray[:, :, None], 3, axis=2) * 0.8 + 30  # faded grey
    toned = cv2.GaussianBlur(np.clip(toned, 0, 255).astype(np.uint8), (0, 0), rng.uniform(0.6, 1.2))
    return _noise(toned, rng.uniform(5, 12), rng)


DEGRADE = {"mixed": mixed, "rain": rain, "haze": haze, "snow": snow, "low_light": low_light, "old_photo": old_photo}


# --- shifted degradations: the same six groups made otherwise, never used to set a threshold.
# Other blurs (motion, a resolution loss), colour noise, heavier and longer rain with mist,
# tinted airlight varying across the frame, larger and wind-blurred flakes, a warm street
# light in the dark, old photos with vignetting, scratches and dust.


def _motion_blur(image, rng, length):
    size = int(length) | 1
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D((size // 2, size // 2), rng.uniform(0, 180), 1.0), (size, size))
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def _colour_noise(image, sigma, shared_sigma, rng):
    """Noise drawn for each channel apart (which colours it), plus a part all channels share."""
    noisy = image + rng.normal(0, sigma, image.shape) + rng.normal(0, shared_sigma, image.shape[:2])[..., None]
    return np.clip(noisy, 0, 255).astype(np.uint8)


def mixed_shifted(image, rng):
    kind = int(rng.integers(3))
    if kind == 0:
        out = _motion_blur(image, rng, rng.uniform(5, 11))
    elif kind == 1:  # a resolution loss: down and back up
        h, w = image.shape[:2]
        factor = rng.uniform(2.5, 4)
        small = cv2.resize(image, (int(w / factor), int(h / factor)), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        out = cv2.GaussianBlur(image, (0, 0), rng.uniform(1.5, 2.5))
    return _jpeg(_colour_noise(out, rng.uniform(6, 18), rng.uniform(2, 6), rng), rng.uniform(15, 40))


def rain_shifted(image, rng):
    streaks = np.zeros(image.shape[:2], np.float32)
    count = int(image.size / 3 / 200 * rng.uniform(0.5, 1.5))
    angle, length = rng.uniform(-0.6, 0.6), rng.uniform(15, 35)
    for y, x in zip(rng.integers(0, image.shape[0], count), rng.integers(0, image.shape[1], count)):
        dx, dy = int(length * np.sin(angle)), int(length * np.cos(angle))
        cv2.line(streaks, (int(x), int(y)), (int(x) + dx, int(y) + dy), 1.0, int(rng.integers(1, 3)))
    streaks = cv2.GaussianBlur(streaks, (0, 0), 1.0)[..., None] * rng.uniform(0.3, 0.6)
    mist = rng.uniform(0.05, 0.2)
    misted = image * (1 - mist) + 200 * mist
    return np.clip(misted * (1 - streaks) + 230 * streaks, 0, 255).astype(np.uint8)


def haze_shifted(image, rng):
    airlight = rng.uniform(190, 235, 3)  # tinted: smog, dust, blue distance
    depth = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.5, 0.8), image.shape[1])[None, :, None]
    veil = np.clip(rng.uniform(0.35, 0.65) * depth * 1.2, 0, 0.85)  # across the frame, not down it
    return np.clip(image * (1 - veil) + airlight * veil, 0, 255).astype(np.uint8)


def snow_shifted(image, rng):
    flakes = np.zeros(image.shape[:2], np.float32)
    count = int(image.size / 3 / 400 * rng.uniform(0.5, 1.5))
    for y, x, r in zip(rng.integers(0, image.shape[0], count), rng.integers(0, image.shape[1], count), rng.integers(1, 6, count)):
        cv2.circle(flakes, (int(x), int(y)), int(r), float(rng.uniform(0.5, 1.0)), -1)
    flakes = _motion_blur(cv2.GaussianBlur(flakes, (0, 0), 1.2), rng, rng.uniform(1, 6))[..., None]  # wind
    amount = rng.uniform(0.1, 0.3)
    veil = image * (1 - amount) + 240 * amount
    return np.clip(veil * (1 - flakes) + 245 * flakes, 0, 255).astype(np.uint8)


def low_light_shifted(image, rng):
    dark = (image / 255.0) ** rng.uniform(2.0, 3.0) * rng.uniform(0.1, 0.25) * 255
    dark = dark * np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.6, 0.9)])  # a warm street light
    return _colour_noise(dark, rng.uniform(2, 5), rng.uniform(1, 3), rng)


def old_photo_shifted(image, rng):
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    fade = rng.uniform(0.6, 0.85)
    gray = gray * fade + (1 - fade) * 200
    if rng.random() < 0.6:
        toned = np.stack([gray * 1.05, gray * 0.85, gray * 0.6], axis=2) + 15
    else:
        toned = np.repeat(gray[..., None], 3, axis=2)
    h, w = gray.shape
    yy, xx = np.mgrid[0:h, 0:w]
    toned = toned * (1 - rng.uniform(0.4, 1.0) * np.hypot(yy / h - 0.5, xx / w - 0.5)[..., None] ** 2)  # vignetting
    out = cv2.GaussianBlur(np.clip(toned, 0, 255).astype(np.uint8), (0, 0), rng.uniform(1.0, 1.8)).astype(np.float64)
    for _ in range(int(rng.integers(2, 8))):  # vertical scratches
        x = int(rng.integers(0, w))
        cv2.line(out, (x, 0), (x + int(rng.integers(-20, 20)), h), (235, 235, 235), 1)
    for _ in range(int(rng.integers(10, 40))):  # dust, dark and light
        shade = (30, 30, 30) if rng.random() < 0.5 else (240, 240, 240)
        cv2.circle(out, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, 3)), shade, -1)
    return _noise(out, rng.uniform(6, 14), rng)


DEGRADATIONS = {
    "standard": DEGRADE,
    "shifted": {
        "mixed": mixed_shifted, "rain": rain_shifted, "haze": haze_shifted, "snow": snow_shifted,
        "low_light": low_light_shifted, "old_photo": old_photo_shifted,
    },
}  # fmt: skip


# --- faults: honest HQ -> faulty HQ --------------------------------------------------


@dataclass
class Context:
    """What a fault may use besides the honest HQ."""

    lq: np.ndarray
    other: np.ndarray  # a crop of another photo, HQ-sized
    rng: np.random.Generator


def _region(shape, area, rng, image=None):
    """A rectangle covering ``area`` of the frame, on the most textured spot if given an image."""
    h, w = shape[:2]
    side_h, side_w = int(h * np.sqrt(area) * rng.uniform(0.8, 1.25)), int(w * np.sqrt(area))
    side_h, side_w = max(8, min(side_h, h - 2)), max(8, min(side_w, w - 2))
    if image is None:
        y, x = rng.integers(0, h - side_h), rng.integers(0, w - side_w)
    else:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        energy = cv2.blur(np.abs(cv2.Laplacian(gray, cv2.CV_32F)), (side_w, side_h))
        margin_y, margin_x = side_h // 2 + 1, side_w // 2 + 1
        inner = energy[margin_y : h - margin_y, margin_x : w - margin_x]
        cy, cx = np.unravel_index(int(np.argmax(inner + rng.uniform(0, 1e-3, inner.shape))), inner.shape)
        y, x = cy + margin_y - side_h // 2, cx + margin_x - side_w // 2
    return int(y), int(x), side_h, side_w


def hallucinated_object(hq, ctx, strength):
    y, x, h, w = _region(hq.shape, 0.08 if strength == "clear" else 0.03, ctx.rng)
    out = hq.copy()
    # An object: the most textured patch of that size in another photo, not a stretch of sky.
    oy, ox, _, _ = _region(ctx.other.shape, (h * w) / (hq.shape[0] * hq.shape[1]), ctx.rng, image=ctx.other)
    oy, ox = min(oy, ctx.other.shape[0] - h), min(ox, ctx.other.shape[1] - w)
    patch = ctx.other[oy : oy + h, ox : ox + w].astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 2)[..., None]
    out[y : y + h, x : x + w] = (out[y : y + h, x : x + w] * (1 - mask) + patch * mask).astype(np.uint8)
    return out, (y, x, h, w)


WORDS = ("EXIT", "SALE", "HOTEL", "CAFE", "OPEN", "STOP", "2024", "PARK")


def hallucinated_text(hq, ctx, strength):
    out = hq.copy()
    text = " ".join(ctx.rng.choice(WORDS, 2))
    height = hq.shape[0] * (0.10 if strength == "clear" else 0.045)
    scale = height / 22
    thickness = max(1, int(scale * 2))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    tw = min(tw, hq.shape[1] - 4)
    y = int(ctx.rng.integers(th + 2, hq.shape[0] - 2))
    x = int(ctx.rng.integers(2, max(3, hq.shape[1] - tw - 2)))
    region = out[y - th : y, x : x + tw]
    color = (255, 255, 255) if region.mean() < 128 else (20, 20, 20)
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
    return out, (y - th, x, th, tw)


def removed_content(hq, ctx, strength):
    # Erase the most detailed spot at the LQ's scale, on the clean target: content the source
    # can show. At HQ pixels, a 2x or 4x target's most detailed spot is often detail its LQ
    # never held, and losing that is not a clear removal.
    scale = hq.shape[0] / ctx.lq.shape[0]
    at_lq_scale = cv2.resize(hq, (ctx.lq.shape[1], ctx.lq.shape[0]), interpolation=cv2.INTER_AREA)
    y, x, h, w = (round(v * scale) for v in _region(at_lq_scale.shape, 0.10 if strength == "clear" else 0.04, ctx.rng, image=at_lq_scale))
    mask = np.zeros(hq.shape[:2], np.uint8)
    cv2.ellipse(mask, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, 255, -1)
    return cv2.inpaint(hq, mask, 5, cv2.INPAINT_TELEA), (y, x, h, w)


def color_shift(hq, ctx, strength):
    lab = cv2.cvtColor(hq.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    if ctx.rng.random() < 0.5 and not colorless(hq):  # hue rotation
        angle = np.deg2rad(ctx.rng.choice([-1, 1]) * (30 if strength == "clear" else 12))
        a, b = lab[..., 1].copy(), lab[..., 2].copy()
        lab[..., 1], lab[..., 2] = a * np.cos(angle) - b * np.sin(angle), a * np.sin(angle) + b * np.cos(angle)
    else:  # colour cast
        amount = 18 if strength == "clear" else 7
        direction = ctx.rng.uniform(0, 2 * np.pi)
        lab[..., 1] += amount * np.cos(direction)
        lab[..., 2] += amount * np.sin(direction)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), None


def geometry(hq, ctx, strength):
    h, w = hq.shape[:2]
    clear = strength == "clear"
    kind = ctx.rng.choice(["shift", "rotate", "zoom"])
    sign = ctx.rng.choice([-1, 1])
    if kind == "shift":
        amount = (0.04 if clear else 0.015) * w
        matrix = np.float32([[1, 0, sign * amount], [0, 1, ctx.rng.uniform(-0.5, 0.5) * amount]])
    elif kind == "rotate":
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), sign * (4.0 if clear else 1.5), 1.0)
    else:
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0, 1.08 if clear else 1.03)
    return cv2.warpAffine(hq, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT), None


def blocking(hq, ctx, strength):
    return _jpeg(hq, 8 if strength == "clear" else 25), None


def noise(hq, ctx, strength):
    return _noise(hq, 18 if strength == "clear" else 7, ctx.rng), None


def ringing(hq, ctx, strength):
    amount, radius = (2.5, 2.0) if strength == "clear" else (1.0, 1.5)
    blurred = cv2.GaussianBlur(hq.astype(np.float32), (0, 0), radius)
    return np.clip(hq + amount * (hq - blurred), 0, 255).astype(np.uint8), None


def oversmoothed(hq, ctx, strength):
    out = hq
    for _ in range(3 if strength == "clear" else 1):
        out = cv2.bilateralFilter(out, 9, 60, 7)
    if strength == "clear":
        out = cv2.GaussianBlur(out, (0, 0), 1.2)
    return out, None


def not_restored(hq, ctx, strength):
    lq = ctx.lq
    if strength == "subtle":
        lq = cv2.fastNlMeansDenoisingColored(lq, None, 4, 4, 5, 15)
    return cv2.resize(lq, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_CUBIC), None


def wrong_image(hq, ctx, strength):
    return ctx.other.copy(), None


def mirrored(hq, ctx, strength):
    return np.ascontiguousarray(hq[:, ::-1]), None


def wrong_resolution(hq, ctx, strength):
    h, w = hq.shape[:2]
    if ctx.rng.random() < 0.5:
        return cv2.resize(hq, (w, int(h * 1.2)), interpolation=cv2.INTER_AREA), None  # stretched
    return cv2.resize(hq, (int(w * 0.6), int(h * 0.6)), interpolation=cv2.INTER_AREA), None  # smaller than LQ


FAULT = {name: globals()[name] for name in FAULTS}


# --- pairs ---------------------------------------------------------------------------


def honest_target(source: np.ndarray, box, rng) -> np.ndarray:
    """The clean crop at ``box``, shifted by up to a pixel and re-toned slightly."""
    y, x, h, w = box
    dy, dx = rng.integers(-1, 2, 2)
    y, x = int(np.clip(y + dy, 0, source.shape[0] - h)), int(np.clip(x + dx, 0, source.shape[1] - w))
    crop = source[y : y + h, x : x + w].astype(np.float32) / 255
    crop = crop ** rng.uniform(0.92, 1.08)
    gray = crop.mean(axis=2, keepdims=True)
    crop = gray + (crop - gray) * rng.uniform(0.95, 1.1)
    return np.clip(crop * 255 + 0.5, 0, 255).astype(np.uint8)


def colorless(image: np.ndarray) -> bool:
    return float(np.abs(image.astype(np.int16) - image.mean(axis=2, keepdims=True)).mean()) < 2


def make_pairs(
    out: Path,
    split: str,
    per_photo: int,
    seed: int = 0,
    strengths=("clear", "subtle"),
    scales=(1, 2),
    degradations: str = "standard",
    twins: bool = False,
) -> list[dict]:
    """Write ``out/lq``, ``out/hq`` and ``out/labels.jsonl``; return the labels.

    Per photo and repeat: one honest pair per degradation group, and one faulty pair per
    fault and strength (on an LQ of a random group). Each pair's scale is drawn from
    ``scales``: an Nx pair's LQ comes from the photo at 1/N size, its HQ from the full-size
    photo. ``degradations`` names the set of LQ degradations ("standard" or "shifted").
    With ``twins``, each faulty pair also gets its twin: the same LQ with the honest HQ the
    fault was planted in (kind "twin", ``of`` naming the faulty pair). The other pairs are
    the same with or without twins.
    """
    rng = np.random.default_rng(seed)
    names = SPLITS[split]
    photos = {n: photo(n) for n in names}
    cases = [("honest", g, None) for g in GROUPS]
    cases += [("fault", f, s) for f in FAULTS for s in strengths if not (s == "subtle" and f in CLEAR_ONLY)]
    labels = []
    for n_photo, name in enumerate(names):
        source = photos[name]
        reduced = {s: cv2.resize(source, None, fx=1 / s, fy=1 / s, interpolation=cv2.INTER_AREA) for s in scales if s > 1}
        for k in range(per_photo):
            for kind, what, strength in cases:
                if what == "color_shift" and colorless(source):
                    continue  # a B/W source: a coloured target cannot be judged against it
                scale = int(rng.choice(scales))
                lq_source = reduced.get(scale, source)
                # HQ crops of 280-400 px on the short side when scaled: LQs of 140-199 px at 2x, 70-99 px at 4x
                short = int(rng.integers(256, 360) if scale == 1 else rng.integers(140, 200) * 2 // scale)
                h, w = short, int(short * rng.uniform(1.0, 1.5))
                if rng.random() < 0.3:
                    h, w = w, h
                h, w = min(h, lq_source.shape[0] - 4), min(w, lq_source.shape[1] - 4)
                y, x = int(rng.integers(2, lq_source.shape[0] - h - 1)), int(rng.integers(2, lq_source.shape[1] - w - 1))
                if kind == "honest":
                    group = what
                else:  # colour cannot be judged against a B/W or sepia LQ
                    allowed = [g for g in GROUPS if not (what == "color_shift" and g == "old_photo")]
                    group = allowed[int(rng.integers(len(allowed)))]
                lq = DEGRADATIONS[degradations][group](lq_source[y : y + h, x : x + w], rng)
                hq = honest_target(source, (y * scale, x * scale, h * scale, w * scale), rng)
                region = other_name = None
                honest_hq = hq
                if kind == "fault":
                    # another photo of the split, never this one (a crop of the same scene is no wrong image)
                    other_name = names[(n_photo + 1 + k % (len(names) - 1)) % len(names)]
                    other = cv2.resize(photos[other_name], (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_AREA)
                    hq, region = FAULT[what](hq, Context(lq, other, rng), strength)
                pair_id = f"{kind}/{what}/{strength or group}/{name.split(':')[-1]}-{k}"
                _save(out / "lq" / f"{pair_id}.png", lq)
                _save(out / "hq" / f"{pair_id}.png", hq)
                labels.append(
                    {"id": pair_id, "kind": kind, "what": what, "strength": strength, "group": group, "photo": name,
                     "other": other_name, "scale": scale, "region": region}
                )  # fmt: skip
                if twins and kind == "fault":
                    twin_id = f"twin/{what}/{strength}/{name.split(':')[-1]}-{k}"
                    _save(out / "lq" / f"{twin_id}.png", lq)
                    _save(out / "hq" / f"{twin_id}.png", honest_hq)
                    labels.append({**labels[-1], "id": twin_id, "kind": "twin", "of": pair_id, "region": None})
    with (out / "labels.jsonl").open("w") as f:
        for label in labels:
            f.write(json.dumps(label, default=int) + "\n")
    return labels


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))
