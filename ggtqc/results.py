"""The results folder: a crash-safe row log, the run's configuration, and a summary.

- ``run.json``: what decides the results (filters, versions, options, thresholds, input).
  A rerun with the same configuration resumes; a different one needs ``--fresh``.
- ``results.jsonl``: one JSON object per pair, appended and flushed to disk batch by
  batch. A rerun skips the ids already there. A half-written last line (the process was
  killed mid-write) is cut off before appending, so every pair ends with exactly one row.
- ``summary.json``: counts by verdict and reason over all rows, thresholds, versions and
  this invocation's timings; rewritten at the end of every run.
- ``heatmaps/<filter>/<id>.png``: where a filter that rejected a pair saw it disagree
  (brighter is worse); the row's ``heatmaps`` names the file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

RESULTS = "results.jsonl"
HEATMAPS = "heatmaps"
HEATMAP_SIDE = 256
RUN = "run.json"
SUMMARY = "summary.json"


class ResumeError(Exception):
    """The results folder cannot be resumed; the message says what to do."""


class ResultsLog:
    def __init__(self, out: Path, run_config: dict[str, Any], fresh: bool = False) -> None:
        self.out = out
        self.path = out / RESULTS
        out.mkdir(parents=True, exist_ok=True)
        run_path = out / RUN
        if fresh:
            for name in (RESULTS, RUN, SUMMARY):
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / HEATMAPS, ignore_errors=True)
        if run_path.exists():
            previous = json.loads(run_path.read_text(encoding="utf-8"))
            if previous != run_config:
                changed = sorted(k for k in previous.keys() | run_config.keys() if previous.get(k) != run_config.get(k))
                raise ResumeError(
                    f"{out} holds results of another configuration (changed: {', '.join(changed)}); "
                    "rerun with --fresh to start over, or choose another --out"
                )
        elif self.path.exists() and self.path.stat().st_size:
            raise ResumeError(f"{self.path} exists without {RUN}; rerun with --fresh or choose another --out")
        else:
            _write_atomic(run_path, json.dumps(run_config, indent=2, sort_keys=True) + "\n")
        self.done = self._repair_and_read_ids()

    def _repair_and_read_ids(self) -> set[str]:
        """Ids already written; cuts a half-written last line off the log."""
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # what follows the last newline: b"" unless a write was cut
        ids = set()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                raise ResumeError(
                    f"{self.path} line {number} is not a result row; fix or remove it, or rerun with --fresh"
                ) from None
        if tail:
            with self.path.open("r+b") as f:
                try:
                    ids.add(json.loads(tail)["id"])  # complete row, only its newline was lost
                    f.seek(len(data))
                    f.write(b"\n")
                except (ValueError, KeyError, TypeError):
                    f.truncate(len(data) - len(tail))
                f.flush()
                os.fsync(f.fileno())
        return ids

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` and make them durable before returning."""
        if not rows:
            return
        text = "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.done.update(row["id"] for row in rows)

    def save_heatmap(self, filter_name: str, pair_id: str, heatmap: np.ndarray) -> str:
        """Write a filter's disagreement map as a colour PNG; return its path relative to out."""
        relative = f"{HEATMAPS}/{filter_name}/{pair_id}.png"
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        scaled = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0, 1)
        height, width = scaled.shape
        zoom = HEATMAP_SIDE / max(height, width)
        scaled = cv2.resize(scaled, (max(1, round(width * zoom)), max(1, round(height * zoom))), interpolation=cv2.INTER_LINEAR)
        ok, encoded = cv2.imencode(".png", cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_INFERNO))
        if not ok:
            raise OSError(f"could not encode the heatmap of {pair_id}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
        return relative

    def rows(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def write_summary(self, extra: dict[str, Any]) -> dict[str, Any]:
        summary = {**count_rows(self.rows()), **extra}
        _write_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")
        return summary


def count_rows(rows) -> dict[str, Any]:
    verdicts: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for row in rows:
        verdicts[row["verdict"]] += 1
        failed.update(row.get("failed", ()))
        if row["verdict"] == "error":
            errors.update(reason.split(" (")[0] for reason in row["reasons"])
    return {
        "pairs": sum(verdicts.values()),
        "verdicts": {v: verdicts[v] for v in ("accept", "reject", "error")},
        "rejected_by": dict(failed.most_common()),
        "errors": dict(errors.most_common()),
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
