"""The filter contract: what a filter declares, and what it returns.

A filter *scores*; the host *decides*. A filter declares its score fields, each with the
direction that is better and a default threshold, and returns one number per pair per
field. The host applies thresholds (defaults, or overrides from ``--config``), writes
verdicts and reasons, and records thresholds and versions next to the results.

A score of NaN means "not measured for this pair" (for example an option that does not
apply); it is written as ``null`` and never decides a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

    from ggtqc.batch import Batch


@dataclass(frozen=True)
class Field:
    """One number a filter computes per pair."""

    name: str
    better: Literal["higher", "lower"]
    threshold: float | None
    """Default threshold; ``None`` records the score without deciding on it."""
    help: str = ""
    margin: float | None = None
    """Half-width of the review band around the threshold, in the field's unit: a score
    this close to the threshold, on either side, sends the pair to review. ``None`` takes
    ``ggtqc.decide.DEFAULT_MARGIN`` of the threshold; 0 makes the threshold a hard limit."""

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"field {self.name!r}: better must be 'higher' or 'lower', not {self.better!r}")


@dataclass(frozen=True)
class Scores:
    """What ``score`` may return instead of a plain mapping: the fields, plus heatmaps and
    the pairs the filter cannot judge.

    ``heatmaps[i]`` is a 2-D float map of pair ``i`` at the LQ's aspect, 0 where the pair
    agrees and about 1 where it disagrees completely (or None). The host saves it as an
    image for pairs that this filter rejects or sends to review.

    ``unsure[i]``, where not None, says in a few words why the filter's scores of pair ``i``
    cannot be trusted (say, too little structure to align on). Unless another field rejects
    it, the pair goes to review with that reason.

    ``notes[i]``, where not None, is one sentence about pair ``i`` for people (a judge's
    reason, say); it is kept on the row and shown in its ``reasons`` as ``<filter>: <note>``.
    """

    values: Mapping[str, Sequence[float]]
    heatmaps: Sequence[np.ndarray | None] | None = None
    unsure: Sequence[str | None] | None = None
    notes: Sequence[str | None] | None = None


@dataclass(frozen=True)
class WeightFile:
    """A file a filter needs before it can run, and where it was looked for."""

    description: str
    searched: tuple[Path, ...]
    found: Path | None = None
    source: str = ""
    """Where ``ggtqc weights --fetch`` can download it from (``hf://repo/file``), if anywhere."""


class Filter:
    """Base class of every filter, built-in or third-party.

    Subclasses set the class attributes and implement :meth:`score`. Options are keyword
    arguments whose defaults live in ``options``; the host passes the configured values.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]]
    options: ClassVar[Mapping[str, bool | int | float | str]] = {}
    gpu: ClassVar[Literal["unused", "optional", "required"]] = "unused"
    cost: ClassVar[float] = 1.0
    """Relative cost per pair; the host runs cheap filters first."""
    settles_review: ClassVar[bool] = False
    """A second opinion on borderline pairs (a VLM judge): where this filter scores a pair
    without rejecting it or finding it borderline, the review bands of earlier filters are
    settled and the pair is accepted."""
    opt_in: ClassVar[bool] = False
    """Left out of ``--plugins all``; runs only when named (a filter that sends pairs to a
    paid API, say)."""

    def __init__(self, **settings: bool | int | float | str) -> None:
        unknown = sorted(set(settings) - set(self.options))
        if unknown:
            raise ValueError(f"filter {self.name!r} has no option {unknown[0]!r}")
        self.settings = {**self.options, **settings}

    def weights(self) -> Sequence[WeightFile]:
        """The model files this filter needs. Called before any work; never downloads."""
        return ()

    def missing(self) -> Sequence[str]:
        """What this filter lacks to run, besides weights (an API key, say): one line each,
        naming what to set. Called before any work."""
        return ()

    def accounting(self) -> Mapping[str, float] | None:
        """What this filter spent since the previous call (``usd``, ``requests``, ``tokens``
        and the like: numbers that add up), or None. The host adds it to the summary and
        shows it on the progress line."""
        return None

    def setup(self, device: torch.device) -> None:
        """Load models onto ``device``. Called once, after :meth:`weights` found everything."""

    def score(self, batch: Batch) -> Mapping[str, Sequence[float]] | Scores:
        """Return ``{field name: one number per pair in batch}``, or :class:`Scores`."""
        raise NotImplementedError

    def wants(self, verdict_so_far: str) -> bool | None:
        """Whether to score a pair whose earlier filters give ``verdict_so_far`` (accept,
        review or reject). None, the default, leaves it to the host: every pair not yet
        rejected, and every pair with ``--all-scores``."""
        return None


class PairFilter(Filter):
    """A filter that scores each pair on its own: implement :meth:`score_pair`."""

    threadsafe: ClassVar[bool] = False
    """``score_pair`` keeps no state between calls, so the host may score several pairs at
    once on its threads (see :meth:`Batch.map`)."""

    def score(self, batch: Batch) -> Mapping[str, Sequence[float]] | Scores:
        columns: dict[str, list[float]] = {f.name: [] for f in self.fields}
        unsure: list[str | None] = []
        for result in batch.map(self.score_pair, batch.lq, batch.hq, threaded=self.threadsafe):
            if isinstance(result, PairScores):
                result, why = result.values, result.unsure
            else:
                why = None
            unsure.append(why)
            for name, value in result.items():
                columns[name].append(value)
        return Scores(columns, unsure=unsure) if any(unsure) else columns

    def score_pair(self, lq: np.ndarray, hq: np.ndarray) -> Mapping[str, float] | PairScores:
        """``{field name: number}`` for one pair of RGB uint8 ``(H, W, 3)`` arrays, or
        :class:`PairScores` where the filter cannot tell."""
        raise NotImplementedError


@dataclass(frozen=True)
class PairScores:
    """What ``score_pair`` returns when it cannot judge one pair: its fields, and in a few
    words why a person should look (the pair goes to review unless a field rejects it)."""

    values: Mapping[str, float]
    unsure: str | None = None
