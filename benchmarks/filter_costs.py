"""What a pair costs, filter by filter, in CPU time on one thread: the per-filter cost table.

    python -m benchmarks.filter_costs [--pairs 24] [--lq-sides 512,256] [--filters ssim,geometry,...]

Writes ``--pairs`` pairs per LQ side to a scratch folder as ``filter_e2e.sh`` does (HQ 1024 px
PNG, LQ JPEG degraded by ``planted.mixed``), then times decoding (both sides, through the
runner's ``load_pair``) and each filter's ``score`` on the whole set, one thread (OpenCV and
torch capped at one), in the order given, best of two runs. Times are the thread's CPU time
(``time.thread_time``), not wall time, so a machine shared with other work still gives
comparable numbers; a busy machine's caches still make them somewhat higher than idle.
Prints a Markdown table (milliseconds per pair).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import cv2
import torch

from benchmarks.throughput_pairs import write_pairs
from ggtqc.batch import Batch, load_pair
from ggtqc.host import load_host
from ggtqc.images import DecodeLimits
from ggtqc.pairs import Pair

FILTERS = "resolution,ssim,color,hallucination,artifacts,geometry"  # the runner's order (by declared cost)


def costs(pairs: list[Pair], filters: list[str], runs: int = 2) -> dict[str, float]:
    """Best CPU ms per pair of decoding and of each filter over ``runs`` runs.

    Each run decodes afresh and scores every filter in order on those images, as a real
    run does: views that ``ggtqc.planes`` keeps per decoded pair are shared between the
    filters of one run, never carried over from the last run.
    """
    entries = load_host().filters()
    instances = {}
    for name in filters:
        instances[name] = entries[name].cls()
        instances[name].setup(torch.device("cpu"))
    warm = [load_pair(p, DecodeLimits()) for p in pairs[:2]]
    for instance in instances.values():
        instance.score(Batch([p.pair.id for p in warm], [p.lq for p in warm], [p.hq for p in warm]))
    best: dict[str, float] = {}
    for _ in range(runs):
        start = time.thread_time()
        loaded = [load_pair(p, DecodeLimits()) for p in pairs]
        times = {"decode (both sides)": time.thread_time() - start}
        batch = Batch([p.pair.id for p in loaded], [p.lq for p in loaded], [p.hq for p in loaded])
        for name, instance in instances.items():
            start = time.thread_time()
            instance.score(batch)
            times[name] = time.thread_time() - start
        for step, seconds in times.items():
            best[step] = min(best.get(step, math.inf), seconds / len(pairs) * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--lq-sides", default="512,256")
    parser.add_argument("--filters", default=FILTERS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    sides = [int(s) for s in args.lq_sides.split(",")]
    filters = args.filters.split(",")
    table = {}
    with tempfile.TemporaryDirectory() as scratch:
        for side in sides:
            table[side] = costs(write_pairs(Path(scratch) / f"lq{side}", args.pairs, side), filters)
    header = " | ".join(f"LQ {s} px ({1024 // s}x)" for s in sides)
    print(f"| step | {header} |")
    print("| --- |" + " ---: |" * len(sides))
    for step in table[sides[0]]:
        print(f"| {step} | " + " | ".join(f"{table[s][step]:.1f}" for s in sides) + " |")
    for side in sides:
        filtered = sum(v for k, v in table[side].items() if not k.startswith("decode"))
        print(f"\nLQ {side}: filters {filtered:.1f} ms per pair against decoding {table[side]['decode (both sides)']:.1f}")


if __name__ == "__main__":
    main()
