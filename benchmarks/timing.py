"""What the speed benchmarks share."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def synchronised(device: str, function: Callable[[], T]) -> Callable[[], T]:
    """``function``, made to wait for the GPU work it queued, so that a timer sees all of it."""

    def run() -> T:
        out = function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    return run


def mean_seconds(benchmark) -> float | None:
    """The benchmark's mean time per round, or None under ``--benchmark-disable`` (a smoke run of every case)."""
    return None if benchmark.stats is None else benchmark.stats.stats.mean
