"""Milliseconds per pair of each weights-free filter, on one thread and on all cores.

    pytest benchmarks/test_filter_throughput.py --benchmark-only

A batch of 16 real photos, HQ 1024x1024 and LQ 512x512 (``planted.mixed``: blur, noise, JPEG), scored
through the runner's ``score_batch`` as ``ggtqc filter --all-scores`` does; ``workers`` is
the size of the thread pool that ``--workers`` gives the run (1: no pool).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from benchmarks.throughput_pairs import BATCH, FILTERS, make_pairs
from benchmarks.timing import mean_seconds
from ggtqc.host import load_host
from ggtqc.runner import Stage, score_batch

WORKERS = sorted({1, os.cpu_count() or 1})
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pairs():
    return make_pairs()


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("name", FILTERS)
def test_filter_ms_per_pair(benchmark, pairs, name, workers):
    entry = load_host().filters()[name]
    instance = entry.cls()
    instance.setup(CPU)
    stage = Stage(instance, entry, {f.name: f.threshold for f in entry.cls.fields})
    benchmark.group = f"filter {name}, batch of {BATCH}"
    benchmark.extra_info["workers"] = workers
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as executor:
        benchmark.pedantic(score_batch, args=(pairs, [stage], True, CPU, executor), rounds=3, warmup_rounds=1, iterations=1)
    if (seconds := mean_seconds(benchmark)) is not None:
        benchmark.extra_info["ms_per_pair"] = seconds / BATCH * 1000
