"""How much of each weights-free filter's time holds the interpreter lock, and so how far threads can scale it.

    .venv/bin/python -m benchmarks.lock_contention [--out results/lock-contention.json]

Scoring threads share one interpreter lock. A filter's C work (OpenCV, NumPy on large
arrays) runs without it, but its Python glue between calls holds it, and no number of
threads overlaps that part: a filter holding the lock for a share ``g`` of its time gains
at most ``1 / g`` from threads (Amdahl). Worker processes (``--processes``) share no lock.

The share is measured by scoring the throughput benchmark's 16 pairs on one thread beside a
pure-Python thread that counts while it has the lock. With a short switch interval the
filter waits little for the lock; over the filter's run time ``T`` the counter gets the
lock for ``T * f`` (``f``: its count rate over its rate alone), so the filter held it for
``g = (1 - f) * T / T_alone`` of its own time alone. Lock hand-overs cost both sides
a little, so ``g`` is an upper estimate. OpenCV and torch run single-threaded here.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from benchmarks.throughput_pairs import BATCH, FILTERS, make_pairs
from ggtqc.host import load_host
from ggtqc.runner import Stage, score_batch

CPU = torch.device("cpu")
SWITCH_INTERVAL = 1e-4  # s; short, so the filter seldom waits for the counter to let go


def beside_counter(work: Callable[[], object] | None, seconds: float) -> tuple[float, float]:
    """Seconds per ``work()`` and the counting thread's rate, while both run (``None``: the counter alone)."""
    stop = threading.Event()
    counted = [0]

    def count() -> None:
        n = 0
        while not stop.is_set():
            n += 1
        counted[0] = n

    counter = threading.Thread(target=count)
    rounds, started = 0, time.perf_counter()
    counter.start()
    if work is None:
        time.sleep(seconds)
    while work is not None and time.perf_counter() - started < seconds:
        work()
        rounds += 1
    stop.set()
    counter.join()
    elapsed = time.perf_counter() - started
    return elapsed / max(rounds, 1), counted[0] / elapsed


def seconds_alone(work, seconds: float) -> float:
    rounds, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        rounds += 1
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time each case this long")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    sys.setswitchinterval(SWITCH_INTERVAL)
    pairs = make_pairs()
    available = load_host().filters()
    _, alone_rate = beside_counter(None, args.seconds)
    table = {}
    for name in FILTERS:
        entry = available[name]
        instance = entry.cls()
        instance.setup(CPU)
        stage = Stage(instance, entry, {f.name: f.threshold for f in entry.cls.fields})
        work = functools.partial(score_batch, pairs, [stage], True, CPU)
        work()
        alone = seconds_alone(work, args.seconds)
        beside, rate = beside_counter(work, args.seconds)
        share = min(1.0, max(0.0, 1 - rate / alone_rate) * beside / alone)
        table[name] = {
            "ms_per_pair": round(alone / BATCH * 1000, 2),
            "ms_per_pair_beside_counter": round(beside / BATCH * 1000, 2),
            "lock_share": round(share, 3),
            "thread_speedup_bound": round(1 / share, 1) if share > 0 else None,
        }
        bound = f"x{1 / share:.1f}" if share > 0 else "(no bound measured)"
        print(f"{name:14s} {alone / BATCH * 1000:6.2f} ms/pair  holds the lock {share:5.1%}  threads gain at most {bound}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"switch_interval_s": SWITCH_INTERVAL, "filters": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
