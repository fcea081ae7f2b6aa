"""The labels file of a run, kept current in memory, and agreement between reviewers.

Labels are written with :func:`ggtqc.labels.append_label` (locked, on disk before it
returns) and read back from where the last read stopped, so a label written by another
tab, another server or a hand edit is picked up on the next request. Only complete lines
are read: a line another process is still writing waits for the next read.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from ggtqc.labels import append_label, parse_line


class LabelStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self._reset()
        self.refresh()

    def _reset(self) -> None:
        self.offset = 0
        self.lines = 0
        self.version = 0  # valid labels read so far: changes whenever anyone adds one
        self.mine: dict[str, dict[str, dict[str, Any]]] = {}  # reviewer -> id -> latest label
        self.problems: list[str] = []
        self.dangling = False

    def refresh(self) -> None:
        """Read the lines added since the last read (all of them if the file was replaced)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self.offset:
            self._reset()
        if size == self.offset:
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        end = data.rfind(b"\n") + 1
        self.dangling = end < len(data)
        for raw in data[:end].splitlines():
            self.lines += 1
            record = parse_line(raw, f"{self.path.name} line {self.lines}", self.problems)
            if record is not None:
                self.mine.setdefault(record["reviewer"], {})[record["id"]] = record
                self.version += 1
        self.offset += end

    def append(self, record: dict[str, Any]) -> None:
        """Write one label durably, then read it (and anything others wrote) back."""
        append_label(self.path, record)
        self.refresh()

    def labels_of(self, reviewer: str) -> dict[str, dict[str, Any]]:
        return self.mine.get(reviewer, {})

    def others(self, pair_id: str, reviewer: str) -> list[dict[str, Any]]:
        return [labels[pair_id] for name, labels in sorted(self.mine.items()) if name != reviewer and pair_id in labels]

    def notes(self) -> list[str]:
        notes = list(self.problems)
        if self.dangling:
            notes.append(f"{self.path.name} ends in a half-written line (a crash?); the next label closes it and it is skipped")
        return notes


def agreement(mine: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """How often reviewers agree on accept/reject (``unsure`` labels are left out).

    ``shared``: pairs with a decision from two or more reviewers; ``agree``: the share of those
    where all decisions are the same; ``pairs``: for each two reviewers, the pairs both
    decided, their agreement and Cohen's kappa (None when chance agreement is total).
    """
    decided = {
        reviewer: {pair: r["label"] for pair, r in labels.items() if r["label"] != "unsure"} for reviewer, labels in mine.items()
    }
    votes: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for labels in decided.values():
        for pair, label in labels.items():
            votes.setdefault(pair, set()).add(label)
            counts[pair] += 1
    shared = [pair for pair, n in counts.items() if n >= 2]
    result: dict[str, Any] = {
        "reviewers": sorted(decided),
        "shared": len(shared),
        "agree": round(sum(len(votes[p]) == 1 for p in shared) / len(shared), 4) if shared else None,
        "pairs": [],
    }
    for a, b in itertools.combinations(sorted(decided), 2):
        common = decided[a].keys() & decided[b].keys()
        if not common:
            continue
        left = [decided[a][p] for p in common]
        right = [decided[b][p] for p in common]
        result["pairs"].append({"reviewers": [a, b], "shared": len(common), **_kappa(left, right)})
    return result


def _kappa(left: list[str], right: list[str]) -> dict[str, float | None]:
    n = len(left)
    observed = sum(x == y for x, y in zip(left, right)) / n
    expected = sum(left.count(c) * right.count(c) for c in ("accept", "reject")) / (n * n)
    kappa = None if expected == 1 else round((observed - expected) / (1 - expected), 4)
    return {"agree": round(observed, 4), "kappa": kappa}
