"""A run's rows, indexed for review, and the queues a reviewer walks through.

The index keeps, per row, its byte offset in ``results.jsonl``, its id, verdict and the
fields that rejected it or put it in the review band; a pair's full row is read from disk
when it is shown. So a 100K-row run opens in a second or two and never sits in a page.

Queues, in the order the page offers them:

- ``review``: rows whose verdict is ``review`` (the band next to a threshold), in file order.
- ``rejected:<filter.field>``: rows that field rejected, one queue per field.
- ``accepted``: accepted rows.
- ``audit``: a uniformly random sample of the rows that were scored (errors have no scores
  to learn from). Rows are ordered by a keyed hash of their id, with the key (the seed)
  stored in ``RUN/review.json``, so a restart sees the same order and every prefix of the
  queue is itself a uniform sample. Only these labels estimate how a whole run fares: the
  other queues over-represent pairs near a threshold.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from array import array
from pathlib import Path
from typing import Any

from ggtqc.images import ImageSource
from ggtqc.labels import AUDIT
from ggtqc.pairs import image_source
from ggtqc.results import RESULTS, RUN
from ggtqc.rowlog import write_atomic

SETTINGS = "review.json"
REVIEW = "review"
ACCEPTED = "accepted"
REJECTED = "rejected:"
_NONE: tuple[str, ...] = ()


class ReviewError(Exception):
    """A run that cannot be reviewed; the message says what to do."""


class RunIndex:
    """The rows of one run folder, indexed once, and its queues."""

    def __init__(self, run: Path, audit_size: int = 1000) -> None:
        self.run = run
        results = run / RESULTS
        if not run.is_dir():
            raise ReviewError(f"{run} is not a folder; give the --out folder of a 'ggtqc filter' run")
        if not results.is_file() or not (run / RUN).is_file():
            raise ReviewError(f"{run} holds no ggtqc results ({RESULTS} and {RUN}); give the --out folder of a 'ggtqc filter' run")
        try:
            self.config: dict[str, Any] = json.loads((run / RUN).read_text(encoding="utf-8"))
            source = Path(self.config["input"])
        except (ValueError, KeyError, TypeError):
            raise ReviewError(f"{run / RUN} is damaged (not the JSON that 'ggtqc filter' writes)") from None
        self.source = source
        self.root = source.parent if source.is_file() else source  # a pairs file lists paths relative to its folder
        self.problems: list[str] = []
        self.ids: list[str] = []
        self.verdicts: list[str] = []
        self.flagged: list[tuple[str, ...]] = []  # the failed fields of a reject, the review fields of a review row
        self.offsets = array("q")
        self.number: dict[str, int] = {}
        self._scan(results)
        if not self.ids:
            raise ReviewError(f"{results} holds no rows yet; run 'ggtqc filter' first")
        self.seed = self._seed()
        self.queues = self._queues(audit_size)

    def _scan(self, results: Path) -> None:
        offset = 0
        with results.open("rb") as f:
            self.identity = _identity(os.fstat(f.fileno()))
            for line_number, raw in enumerate(f, 1):
                start, offset = offset, offset + len(raw)
                if not raw.endswith(b"\n") or not raw.strip():
                    continue  # blank, or a last line a running filter is still writing
                try:
                    row = json.loads(raw)
                    pair_id, verdict = row["id"], row["verdict"]
                except (ValueError, KeyError, TypeError):
                    self.problems.append(f"{RESULTS} line {line_number} is not a row; skipped")
                    continue
                flagged = tuple(row.get("failed") or row.get("review") or ()) or _NONE
                if pair_id in self.number:  # a later row of an id supersedes the earlier one
                    n = self.number[pair_id]
                    self.verdicts[n], self.flagged[n], self.offsets[n] = verdict, flagged, start
                    continue
                self.number[pair_id] = len(self.ids)
                self.ids.append(pair_id)
                self.verdicts.append(verdict)
                self.flagged.append(flagged)
                self.offsets.append(start)

    def _seed(self) -> str:
        path = self.run / SETTINGS
        try:
            settings = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            seed = settings.get("audit_seed") if isinstance(settings, dict) else None
        except ValueError:
            raise ReviewError(f"{path} is damaged; delete it to draw a new audit sample (labels are kept)") from None
        if isinstance(seed, str) and seed:
            return seed
        seed = secrets.token_hex(8)
        try:
            write_atomic(path, (json.dumps({"audit_seed": seed}, indent=2) + "\n").encode())
        except OSError as e:
            raise ReviewError(f"cannot write in {self.run} ({e.strerror}); labels are written there, so it must be writable") from None
        return seed

    def _queues(self, audit_size: int) -> dict[str, list[int]]:
        review, accepted, scored = [], [], []
        rejected: dict[str, list[int]] = {}
        for n, verdict in enumerate(self.verdicts):
            if verdict == REVIEW:
                review.append(n)
            elif verdict == "accept":
                accepted.append(n)
            elif verdict == "reject":
                for name in self.flagged[n]:
                    rejected.setdefault(name, []).append(n)
            if verdict != "error":
                scored.append(n)
        key = self.seed.encode()
        scored.sort(key=lambda n: hashlib.blake2b(self.ids[n].encode(), key=key, digest_size=8).digest())
        queues = {REVIEW: review}
        for name in sorted(rejected, key=lambda k: (-len(rejected[k]), k)):
            queues[REJECTED + name] = rejected[name]
        queues[ACCEPTED] = accepted
        queues[AUDIT] = scored[:audit_size]
        return queues

    def title(self, queue: str) -> str:
        if queue == REVIEW:
            return "review band"
        if queue == AUDIT:
            return "audit sample (uniformly random)"
        if queue.startswith(REJECTED):
            return f"rejected by {queue[len(REJECTED):]}"
        return queue

    def row(self, number: int) -> dict[str, Any]:
        """The full row at ``number``, read from disk."""
        with (self.run / RESULTS).open("rb") as f:
            f.seek(self.offsets[number])
            return json.loads(f.readline())

    def replaced(self) -> bool:
        """Whether ``results.jsonl`` is another file now (``ggtqc decide`` or ``filter --fresh``
        rewrote it), so the offsets no longer point at its rows."""
        try:
            return _identity((self.run / RESULTS).stat()) != self.identity
        except FileNotFoundError:
            return False

    def image_path(self, row: dict[str, Any], side: str) -> Path | ImageSource | None:
        """The row's file of ``side``, or the Parquet cell that holds its bytes."""
        relative = row.get(side)
        return image_source(self.source, relative) if isinstance(relative, str) and relative else None


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino
