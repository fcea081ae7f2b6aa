"""Batches of decoded pairs, and the loader that decodes them in background threads.

Decoding (Pillow, OpenCV and NumPy release the GIL while they work) runs in a thread pool
a few batches ahead of scoring, so the cores, or the GPU, stay busy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ggtqc.images import DecodeError, DecodeLimits, decode_image
from ggtqc.pairs import Pair


@dataclass
class Batch:
    """Decoded pairs handed to each filter's ``score``.

    ``lq[i]`` and ``hq[i]`` are read-only RGB ``uint8`` arrays of shape ``(H, W, 3)``;
    sizes vary within a batch. ``cache`` is shared by every filter scoring this batch and
    by its subsets, so one filter can reuse what another computed (embeddings, downsampled
    planes); key entries by name and pair id, since a subset holds fewer pairs.
    ``executor``, if the host gives one, is a thread pool for :meth:`map`. ``reasons[i]``,
    where the host gives them, are the reasons the earlier filters gave pair ``i``.
    """

    ids: list[str]
    lq: list[np.ndarray]
    hq: list[np.ndarray]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache: dict[str, Any] = field(default_factory=dict)
    executor: Executor | None = None
    reasons: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def map(self, function: Callable[..., Any], *iterables: Iterable[Any], threaded: bool = True) -> list[Any]:
        """``list(map(function, *iterables))``, on the host's threads when it gave some.

        OpenCV and NumPy release the GIL, so per-pair work spreads over the cores.
        ``function`` must not keep state between calls; ``threaded=False`` keeps the calls
        on the calling thread.
        """
        if self.executor is None or not threaded:
            return list(map(function, *iterables))
        return list(self.executor.map(function, *iterables))

    def subset(self, indices: list[int]) -> Batch:
        """The pairs at ``indices``, sharing this batch's cache."""
        return Batch(
            [self.ids[i] for i in indices],
            [self.lq[i] for i in indices],
            [self.hq[i] for i in indices],
            self.device,
            self.cache,
            self.executor,
            [self.reasons[i] for i in indices] if self.reasons is not None else None,
        )


@dataclass
class LoadedPair:
    pair: Pair
    lq: np.ndarray | None = None
    hq: np.ndarray | None = None
    error: str | None = None


def load_pair(pair: Pair, limits: DecodeLimits) -> LoadedPair:
    if pair.error:
        return LoadedPair(pair, error=pair.error)
    images = {}
    errors = []
    for side, path in (("lq", pair.lq), ("hq", pair.hq)):
        try:
            images[side] = decode_image(path, limits)
        except DecodeError as e:
            errors.append(f"{side}: {e}")
    if errors:
        return LoadedPair(pair, error="; ".join(errors))
    return LoadedPair(pair, images["lq"], images["hq"])


def load_batches(
    pairs: Iterable[Pair],
    batch_size: int,
    limits: DecodeLimits,
    workers: int,
    prefetch: int = 2,
) -> Iterator[list[LoadedPair]]:
    """Yield lists of decoded pairs in input order, decoding ``prefetch`` batches ahead."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ggtqc-decode") as pool:
        pending: deque[list[Future[LoadedPair]]] = deque()
        for chunk in chunks(pairs, batch_size):
            pending.append([pool.submit(load_pair, pair, limits) for pair in chunk])
            if len(pending) > prefetch:
                yield [f.result() for f in pending.popleft()]
        while pending:
            yield [f.result() for f in pending.popleft()]


def chunks(items: Iterable[Pair], size: int) -> Iterator[list[Pair]]:
    chunk: list[Pair] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
