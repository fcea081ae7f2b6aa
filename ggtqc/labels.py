"""Human labels of a run: ``RUN/labels.jsonl``, written by ``ggtqc review`` or by hand.

One JSON object per decision, appended and on disk before :func:`append_label` returns::

    {"id": "haze/coffee", "label": "reject", "tags": ["colour_shift"], "reviewer": "ana",
     "queue": "audit", "time": "2026-12-03T09:14:05Z", "scores_shown": true}

- ``label``: ``accept`` (a faithful, high-quality target), ``reject`` (a fault), or
  ``unsure`` (seen, no decision; it counts as labelled for resuming, never for calibration).
- ``tags``: what is wrong, from :data:`TAGS` (others are kept, and warned about by readers).
- ``queue``: ``audit`` for the uniformly random sample of the whole run, else the queue the
  pair was shown in (``review``, ``rejected:<field>``, ``accepted``). Only audit labels
  estimate how a whole run fares; the other queues over-represent borderline pairs.
- ``scores_shown``: whether the reviewer saw the scores (``false`` in blind mode).

The last line for an (id, reviewer) wins, so an undo or a change of mind appends a new line
and nothing is ever rewritten. A corrupt line (a crash mid-write, a hand edit) is reported
with its line number and skipped; the rest are read.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LABELS = "labels.jsonl"
VALUES = ("accept", "reject", "unsure")
AUDIT = "audit"
TAGS = (
    "hallucinated_object",
    "removed_object",
    "text_changed",
    "identity_changed",
    "colour_shift",
    "geometry_changed",
    "plastic",
    "over_sharpened",
    "artifacts",
    "not_restored",
    "other",
)


class LabelError(ValueError):
    """A label that cannot be written; the message names the key."""


@dataclass
class Labels:
    """What a labels file holds: the last decision per (id, reviewer), and the bad lines."""

    latest: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lines: int = 0

    def reviewers(self) -> list[str]:
        return sorted({reviewer for _, reviewer in self.latest})

    def by_id(self) -> dict[str, list[dict[str, Any]]]:
        """Each labelled id's latest label of every reviewer."""
        out: dict[str, list[dict[str, Any]]] = {}
        for (pair_id, _), record in self.latest.items():
            out.setdefault(pair_id, []).append(record)
        return out

    def consensus(self) -> dict[str, dict[str, Any]]:
        """One decision per id over its reviewers: the majority of accept/reject votes.

        ``unsure`` votes and ties give no decision, and such ids are left out. The result
        carries ``label``, the union of ``tags`` of the winning side, ``audit`` (whether any
        reviewer saw the pair in the audit sample) and ``votes``.
        """
        out: dict[str, dict[str, Any]] = {}
        for pair_id, records in self.by_id().items():
            votes = Counter(r["label"] for r in records if r["label"] != "unsure")
            if not votes or votes["accept"] == votes["reject"]:
                continue
            label = "accept" if votes["accept"] > votes["reject"] else "reject"
            tags = sorted({t for r in records if r["label"] == label for t in r.get("tags", ())})
            audit = any(r.get("queue") == AUDIT for r in records)
            out[pair_id] = {"id": pair_id, "label": label, "tags": tags, "audit": audit, "votes": dict(votes)}
        return out


def make_label(
    pair_id: str,
    label: str,
    reviewer: str,
    queue: str,
    tags: Iterable[str] = (),
    scores_shown: bool = True,
    time: str | None = None,
) -> dict[str, Any]:
    """A checked label record, stamped with the current UTC time unless ``time`` is given."""
    record = {
        "id": pair_id,
        "label": label,
        "tags": list(tags),
        "reviewer": reviewer,
        "queue": queue,
        "time": time or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scores_shown": scores_shown,
    }
    problem = check(record)
    if problem:
        raise LabelError(problem)
    return record


def check(record: object) -> str | None:
    """What is wrong with a label record, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for key in ("id", "reviewer", "queue"):
        if not isinstance(record.get(key), str) or not record[key]:
            return f"'{key}' must be a non-empty string"
    if record.get("label") not in VALUES:
        return f"'label' must be one of {', '.join(VALUES)}, not {record.get('label')!r}"
    tags = record.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "'tags' must be a list of strings"
    return None


def append_label(path: Path, record: dict[str, Any]) -> None:
    """Append one checked record and make it durable before returning.

    An exclusive lock makes appends from several processes (two servers on one run) whole
    lines; a last line left without its newline by a crash is closed first, so it stays one
    corrupt line instead of swallowing this one.
    """
    problem = check(record)
    if problem:
        raise LabelError(problem)
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    with path.open("ab") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            size = f.seek(0, os.SEEK_END)
            if size:
                with path.open("rb") as reader:
                    reader.seek(size - 1)
                    if reader.read(1) != b"\n":
                        data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def parse_line(raw: bytes, where: str, problems: list[str]) -> dict[str, Any] | None:
    """One line's label, or None for a blank or bad line (bad lines are added to ``problems``)."""
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        problems.append(f"{where}: not JSON, skipped")
        return None
    problem = check(record)
    if problem:
        problems.append(f"{where}: {problem}, skipped")
        return None
    unknown = [t for t in record.get("tags", []) if t not in TAGS]
    if unknown:
        problems.append(f"{where}: unknown tag {unknown[0]!r} (kept)")
    return record


def read_labels(path: Path) -> Labels:
    """Every valid label of ``path`` (none if it does not exist), the last per (id, reviewer)."""
    labels = Labels()
    if not path.exists():
        return labels
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            labels.lines = number
            record = parse_line(raw, f"{path.name} line {number}", labels.problems)
            if record is not None:
                labels.latest[(record["id"], record["reviewer"])] = record
    return labels
