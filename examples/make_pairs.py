"""Rebuild examples/pairs from scikit-image's bundled public-domain photos.

    python examples/make_pairs.py

LQ images carry a degradation of one of the six groups (mixed, rain, haze, snow,
low-light, old photo); faithful HQ targets are the clean photos (some at 2x). A few targets carry a
planted fault, one file is truncated and one LQ has no HQ, so that
``ggtqc filter examples/pairs`` shows every verdict.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
from skimage import data

ROOT = Path(__file__).parent / "pairs"
rng = np.random.default_rng(0)


def resize(image, width, height):
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def jpeg(image, quality):
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def noisy(image, sigma):
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def mixed(image):
    blurred = cv2.GaussianBlur(image, (0, 0), 1.2)
    return jpeg(noisy(blurred, 8), 35)


def haze(image):
    depth = np.linspace(0.35, 0.75, image.shape[0])[:, None, None]
    return (image * (1 - depth) + 225 * depth).astype(np.uint8)


def low_light(image):
    dark = (image / 255.0) ** 2.2 * 0.25 * 255
    return noisy(dark, 4)


def old_photo(image):
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    sepia = np.stack([gray * 1.07, gray * 0.74, gray * 0.43], axis=2) + 20
    return noisy(cv2.GaussianBlur(np.clip(sepia, 0, 255).astype(np.uint8), (0, 0), 0.8), 10)


def rain(image):
    streaks = np.zeros(image.shape[:2], np.float32)
    ys, xs = rng.integers(0, image.shape[0], 300), rng.integers(0, image.shape[1], 300)
    for y, x in zip(ys, xs):
        cv2.line(streaks, (int(x), int(y)), (int(x) + 4, int(y) + 18), 1.0, 1)
    streaks = cv2.GaussianBlur(streaks, (0, 0), 0.7)[..., None]
    return np.clip(image * (1 - 0.5 * streaks) + 230 * 0.5 * streaks, 0, 255).astype(np.uint8)


def snow(image):
    flakes = np.zeros(image.shape[:2], np.float32)
    for y, x, r in zip(rng.integers(0, image.shape[0], 400), rng.integers(0, image.shape[1], 400), rng.integers(1, 4, 400)):
        cv2.circle(flakes, (int(x), int(y)), int(r), 1.0, -1)
    flakes = cv2.GaussianBlur(flakes, (0, 0), 1.0)[..., None]
    veil = image * 0.85 + 255 * 0.15
    return np.clip(veil * (1 - flakes) + 250 * flakes, 0, 255).astype(np.uint8)


def save(path: Path, image: np.ndarray, quality: int = 85) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        cv2.imwrite(str(path), image[..., ::-1])
    elif path.suffix == ".webp":
        cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_WEBP_QUALITY, quality])
    else:
        cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    astronaut, coffee, rocket, chelsea = data.astronaut(), data.coffee(), data.rocket(), data.chelsea()
    lq, hq = ROOT / "lq", ROOT / "hq"

    # Faithful restorations.
    save(lq / "mixed/astronaut.jpg", mixed(resize(astronaut, 256, 256)), 95)
    save(hq / "mixed/astronaut.jpg", astronaut)  # 2x super-resolution target
    save(lq / "haze/coffee.jpg", haze(resize(coffee, 384, 256)))
    save(hq / "haze/coffee.jpg", resize(coffee, 384, 256))
    save(lq / "lowlight/rocket.webp", low_light(resize(rocket, 384, 256)))
    save(hq / "lowlight/rocket.jpg", resize(rocket, 384, 256))
    save(lq / "oldphoto/chelsea.jpg", old_photo(resize(chelsea, 384, 256)))
    save(hq / "oldphoto/chelsea.webp", resize(chelsea, 768, 512))  # 2x
    save(lq / "rain/astronaut_face.jpg", rain(astronaut[40:296, 140:396]))
    save(hq / "rain/astronaut_face.jpg", astronaut[40:296, 140:396])
    save(lq / "snow/coffee_cup.jpg", snow(coffee[:320, 200:600]))
    save(hq / "snow/coffee_cup.jpg", coffee[:320, 200:600])

    # Planted faults.
    save(lq / "fault/small_target.jpg", mixed(resize(coffee, 384, 256)))
    save(hq / "fault/small_target.jpg", resize(coffee, 192, 128))  # smaller than its LQ
    save(lq / "fault/stretched.jpg", haze(resize(rocket, 384, 256)))
    save(hq / "fault/stretched.jpg", resize(rocket, 384, 384))  # aspect ratio changed
    save(lq / "fault/mirrored.jpg", mixed(resize(chelsea, 384, 256)))
    save(hq / "fault/mirrored.jpg", resize(chelsea, 384, 256)[:, ::-1])  # geometry
    save(lq / "fault/wrong_image.jpg", low_light(resize(coffee, 384, 256)))
    save(hq / "fault/wrong_image.jpg", resize(chelsea, 384, 256))  # another photo

    cup = resize(coffee, 384, 256)
    pasted = cup.copy()
    pasted[60:140, 250:350] = resize(astronaut[150:330, 160:385], 100, 80)  # a face on the table
    save(lq / "fault/pasted_object.jpg", mixed(cup))
    save(hq / "fault/pasted_object.jpg", pasted)
    portrait = resize(astronaut, 384, 384)  # a white suit: greys that a cast added colours
    lab = cv2.cvtColor(portrait.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    lab[..., 1] -= 18  # a green cast
    save(lq / "fault/color_cast.jpg", cv2.GaussianBlur(portrait, (0, 0), 1.2))  # a soft source: no veil to lift
    save(hq / "fault/color_cast.jpg", np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255 + 0.5, 0, 255).astype(np.uint8))

    # Broken input: a truncated target and an LQ without a target.
    save(lq / "broken/truncated.jpg", mixed(resize(astronaut, 256, 256)))
    whole = cv2.imencode(".png", resize(astronaut, 128, 128)[..., ::-1])[1].tobytes()
    (hq / "broken").mkdir(parents=True, exist_ok=True)
    (hq / "broken/truncated.png").write_bytes(whole[: len(whole) // 2])
    save(lq / "broken/no_target.jpg", rain(resize(coffee, 384, 256)))


if __name__ == "__main__":
    main()
