"""The weights-free filters on a GPU: do they agree with the CPU path, and what does a pair cost?

    python -m benchmarks.gpu_weightsfree [--device cuda] [--batches 1,16,64] [--out DIR]
    python -m benchmarks.gpu_weightsfree --device cpu --batches 1,4 --pairs 8   # the torch path on CPU: checks it runs

Needs nothing from the network: pairs are made from scikit-image's bundled photos.

1. Parity. ``color``, ``hallucination`` and ``resolution`` score ``examples/pairs``, one
   planted fault of each kind (calibration photos, 1x, 2x, 4x) and the 1024 px pairs below,
   once on the CPU path (``GGTQC_FILTER_IMPL=numpy``) and once on the torch path on
   ``--device``. Every field must be within its tolerance (``TOLERANCE``, the parity test's)
   and every field's outcome at its default threshold and margin the same; the exit status
   is 1 otherwise.
   ``artifacts`` is checked and timed the same way (``FILTERS``).
2. Time. Pairs of a 1024x1024 HQ and a 512 px (2x) or 1024 px (1x) LQ degraded by
   ``planted.mixed``, in batches of each ``--batches`` size: milliseconds per pair of
   ``score`` (upload of the decoded arrays included, as the runner hands over decoded
   arrays), per filter and all of them together, ``torch.cuda.synchronize()`` around each
   timing, the median of ``--repeats`` after one warm-up. Decoding is timed apart: Pillow
   on one CPU thread, and, on CUDA with torchvision, ``decode_jpeg`` on the device (nvJPEG)
   for a batch of the same pairs as JPEG (the runner does not decode on the device yet).

Prints a table and writes ``results.json`` under ``--out`` when given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from benchmarks import planted
from ggtqc import Scores
from ggtqc.batch import Batch
from ggtqc.decide import Rule, default_margin
from ggtqc.images import DecodeError, decode_bytes, decode_image
from ggtqc.kernels.planes import IMPL_VARIABLE
from ggtqc.pairs import discover
from ggtqc.plugins.artifacts import Artifacts
from ggtqc.plugins.color import Color
from ggtqc.plugins.geometry import Geometry
from ggtqc.plugins.hallucination import Hallucination
from ggtqc.plugins.resolution import Resolution

REPO = Path(__file__).resolve().parents[1]
FILTERS = (Resolution, Color, Hallucination)  # the runner's order (by declared cost)
FILTERS += (Artifacts,)  # cost 6, after hallucination's 5, before geometry's 18
FILTERS += (Geometry,)  # the costliest: last
# Absolute, in each field's unit; why each is what it is: tests/test_torch_parity.py.
TOLERANCE = {
    "color.hue_shift_deg": 0.05,
    "color.cast": 2e-3,
    "color.lq_free_chroma": 0.1,
    "color.contrast": 1e-5,
    "color.saturation": 5e-4,
    "color.local": 0.05,
    "color.cast_removed": 2e-3,
    "geometry.displacement_px": 0.01,
    "geometry.mirror_gain": 5e-5,
    "geometry.correlation": 5e-5,
    "geometry.shift_x_px": 5e-3,
    "geometry.shift_y_px": 5e-3,
    "geometry.scale": 5e-5,
    "geometry.rotation_deg": 5e-3,
    "hallucination.added": 1e-4,
    "hallucination.removed": 1e-4,
    "hallucination.replaced": 1e-4,
    "artifacts.blockiness": 1e-5,
    "artifacts.noise": 5e-3,
    "artifacts.halo": 0.06,
    "artifacts.detail": 1e-5,
    "artifacts.clipped": 1e-9,
    "artifacts.tonal_range": 1e-4,
    "artifacts.change": 0.03,
    "artifacts.lq_detail": 1e-5,
}


@contextlib.contextmanager
def implementation(name: str) -> Iterator[None]:
    """Run the weights-free filters' ``name`` path (``GGTQC_FILTER_IMPL``) inside the block."""
    before = os.environ.get(IMPL_VARIABLE)
    os.environ[IMPL_VARIABLE] = name
    try:
        yield
    finally:
        if before is None:
            del os.environ[IMPL_VARIABLE]
        else:
            os.environ[IMPL_VARIABLE] = before


def scored(cls, batch: Batch, impl: str, device: torch.device):
    """``(values, unsure, heatmaps)`` of filter ``cls`` on a fresh copy of ``batch`` (no shared cache)."""
    with implementation(impl):
        instance = cls()
        instance.setup(device)
        result = instance.score(Batch(batch.ids, batch.lq, batch.hq, device))
    n = len(batch)
    if isinstance(result, Scores):
        return dict(result.values), list(result.unsure or [None] * n), list(result.heatmaps or [None] * n)
    return dict(result), [None] * n, [None] * n


def outcomes(cls, values, unsure, i: int) -> tuple[str, ...]:
    """Each field's outcome at its default threshold and margin, and whether the filter is unsure."""
    rules = [Rule(f.name, f.better, f.threshold, default_margin(f.threshold, f.margin)) for f in cls.fields]
    return (*(rule.judge(values[rule.field][i]) for rule in rules), "unsure" if unsure[i] else "sure")


def disagreements(cls, batch: Batch, device: torch.device = torch.device("cpu")) -> tuple[list[str], dict[str, float]]:
    """How the torch path on ``device`` departs from the CPU path on ``batch``: each problem in
    words (none when they agree within ``TOLERANCE``), and the largest difference per field."""
    cpu_values, cpu_unsure, cpu_maps = scored(cls, batch, "numpy", torch.device("cpu"))
    torch_values, torch_unsure, torch_maps = scored(cls, batch, "torch", device)
    problems, largest = [], {}
    for field in cls.fields:
        key = f"{cls.name}.{field.name}"
        tolerance = TOLERANCE.get(key, 0.0)
        largest[key] = 0.0
        for i, pair_id in enumerate(batch.ids):
            a, b = cpu_values[field.name][i], torch_values[field.name][i]
            if math.isnan(a) != math.isnan(b) or abs(a - b) > tolerance:
                problems.append(f"{pair_id} {key}: cpu {a!r}, torch {b!r} (tolerance {tolerance})")
            if not (math.isnan(a) or math.isnan(b)):
                largest[key] = max(largest[key], abs(a - b))
    for i, pair_id in enumerate(batch.ids):
        if outcomes(cls, cpu_values, cpu_unsure, i) != outcomes(cls, torch_values, torch_unsure, i):
            problems.append(f"{pair_id} {cls.name}: outcomes differ")
        if (cpu_maps[i] is None) != (torch_maps[i] is None):
            problems.append(f"{pair_id} {cls.name}: a heatmap on one path only")
        elif cpu_maps[i] is not None and not np.allclose(cpu_maps[i], torch_maps[i], atol=1e-3):
            problems.append(f"{pair_id} {cls.name}: heatmaps differ by {np.abs(cpu_maps[i] - torch_maps[i]).max():.3g}")
    return problems, largest


def load(root: Path) -> Batch:
    """The decodable pairs of a pairs folder."""
    ids, lq, hq = [], [], []
    for pair in discover(root):
        if pair.error:
            continue
        try:
            images = decode_image(pair.lq), decode_image(pair.hq)
        except DecodeError:
            continue  # the sample folder's broken pairs
        ids.append(pair.id)
        lq.append(images[0])
        hq.append(images[1])
    return Batch(ids, lq, hq)


def large_pairs(count: int, lq_side: int, seed: int = 0) -> Batch:
    """``count`` pairs of a 1024x1024 HQ and an ``lq_side`` LQ (blur, noise, JPEG), read-only as decoded."""
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    ids, lq, hq = [], [], []
    for k in range(count):
        photo = photos[k % len(photos)]
        size = min(photo.shape[:2]) * 3 // 4
        y, x = rng.integers(0, photo.shape[0] - size + 1), rng.integers(0, photo.shape[1] - size + 1)
        target = cv2.resize(photo[y : y + size, x : x + size], (1024, 1024), interpolation=cv2.INTER_CUBIC)
        source = planted.mixed(cv2.resize(target, (lq_side, lq_side), interpolation=cv2.INTER_AREA), rng)
        for image in (target, source):
            image.flags.writeable = False
        ids.append(f"{lq_side}/{k:03d}")
        lq.append(source)
        hq.append(target)
    return Batch(ids, lq, hq)


def parity(device: torch.device, pairs: int) -> tuple[list[str], dict[str, float], int]:
    with tempfile.TemporaryDirectory() as scratch:
        planted.make_pairs(Path(scratch), "calibration", per_photo=1, seed=0, strengths=("clear",), scales=(1, 2, 4))
        sets = [load(REPO / "examples" / "pairs"), load(Path(scratch)), large_pairs(pairs, 512, seed=1), large_pairs(pairs, 1024, seed=2)]
    problems, largest, count = [], {}, 0
    for batch in sets:
        count += len(batch)
        for cls in FILTERS:
            found, differences = disagreements(cls, batch, device)
            problems += found
            for key, value in differences.items():
                largest[key] = max(largest.get(key, 0.0), value)
    return problems, largest, count


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_scoring(batches: list[int], device: torch.device, repeats: int, lq_sides: list[int]) -> list[dict]:
    rows = []
    with implementation("torch"):
        filters = []
        for cls in FILTERS:
            instance = cls()
            instance.setup(device)
            filters.append(instance)
        for lq_side in lq_sides:
            for size in batches:
                pairs = large_pairs(size, lq_side)
                row = {"lq_side": lq_side, "batch": size}
                for label, chosen in [(f.name, [f]) for f in filters] + [("together", filters)]:
                    times = []
                    for attempt in range(repeats + 1):  # the first warms up (kernels, tables, allocator)
                        batch = Batch(pairs.ids, pairs.lq, pairs.hq, device)  # a fresh cache: uploads counted
                        synchronize(device)
                        start = time.perf_counter()
                        for instance in chosen:
                            instance.score(batch)
                        synchronize(device)
                        if attempt:
                            times.append((time.perf_counter() - start) / size * 1000)
                    row[label] = statistics.median(times)
                rows.append(row)
    return rows


def time_decoding(device: torch.device, count: int) -> dict[str, float]:
    """Milliseconds per pair: Pillow on one thread (the CPU path), and nvJPEG on the device if it can."""
    pairs = large_pairs(count, 512)
    encoded = []
    for lq, hq in zip(pairs.lq, pairs.hq):
        encoded.append([cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                        for image in (lq, hq)])  # fmt: skip
    start = time.thread_time()
    for lq, hq in encoded:
        decode_bytes(lq), decode_bytes(hq)
    result = {"pillow_cpu_thread_ms": (time.thread_time() - start) / count * 1000}
    if device.type == "cuda":
        try:
            from torchvision.io import decode_jpeg

            data_list = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for pair in encoded for b in pair]
            decode_jpeg(data_list[:2], device=device)  # warm-up: nvJPEG handles
            synchronize(device)
            start = time.perf_counter()
            decode_jpeg(data_list, device=device)
            synchronize(device)
            result["nvjpeg_device_ms"] = (time.perf_counter() - start) / count * 1000
        except Exception as error:  # torchvision without nvJPEG support: report, do not fail the check
            result["nvjpeg_error"] = f"{type(error).__name__}: {error}"[:300]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="1,16,64", help="batch sizes to time, comma-separated")
    parser.add_argument("--lq-sides", default="512,1024", help="LQ sides of the timed 1024 px pairs (2x, 1x)")
    parser.add_argument("--pairs", type=int, default=16, help="1024 px pairs of each LQ side in the parity check")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("torch sees no CUDA device; run with --device cpu to check the torch path on the CPU", file=sys.stderr)
        return 2
    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "torch": torch.__version__}
    status = 0
    if not args.skip_parity:
        problems, largest, count = parity(device, args.pairs)
        report["parity"] = {"pairs": count, "problems": problems, "largest_difference": largest}
        print(f"parity on {count} pairs: {len(problems)} disagreements")
        for problem in problems[:20]:
            print("  " + problem)
        for key, value in largest.items():
            print(f"  {key}: largest |cpu - {device.type}| {value:.3g} (tolerance {TOLERANCE.get(key, 0.0):.3g})")
        status = 1 if problems else 0
    rows = time_scoring([int(b) for b in args.batches.split(",")], device, args.repeats, [int(s) for s in args.lq_sides.split(",")])
    report["scoring_ms_per_pair"] = rows
    labels = [key for key in rows[0] if key not in ("lq_side", "batch")]
    print(f"\nms per pair on {report['device']} (median of {args.repeats}; upload of the decoded arrays included)")
    print("| LQ | batch | " + " | ".join(labels) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in labels) + " |")
    for row in rows:
        print(f"| {row['lq_side']} | {row['batch']} | " + " | ".join(f"{row[label]:.3f}" for label in labels) + " |")
    report["decoding"] = time_decoding(device, max(int(b) for b in args.batches.split(",")))
    print("decoding, ms per pair (JPEG q95, HQ 1024 + LQ 512):", json.dumps(report["decoding"]))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
