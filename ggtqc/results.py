"""The results folder: a crash-safe row log, the run's configuration, and a summary.

- ``run.json``: what decides the results (filters in the order they run, versions,
  options, thresholds and review margins with fields in declared order, input). A rerun
  with the same configuration resumes; a different one needs ``--fresh``.
- ``results.jsonl``: one JSON object per pair, appended and flushed to disk batch by
  batch (``ggtqc.rowlog``). A rerun skips the ids already there; a half-written last line
  is cut off before appending, so every pair ends with exactly one row.
- ``summary.json``: counts by verdict and reason over all rows, thresholds, versions and
  this invocation's timings; rewritten at the end of every run.
- ``heatmaps/<filter>/<id>.png``: where a filter that rejected a pair saw it disagree
  (brighter is worse); the row's ``heatmaps`` names the file.
- ``results.parquet`` (``--parquet``): the same rows as a Parquet table, for dataframe
  tools; rewritten from ``results.jsonl`` at the end of each ``filter`` run that asks for it
  (``ggtqc decide`` leaves it as it was).
- ``shards/``: the Ray engine's finished shards and their markers (``ggtqc.engines.ray``).
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

from ggtqc.rowlog import LogError, RowLog, write_atomic

RESULTS = "results.jsonl"
HEATMAPS = "heatmaps"
HEATMAP_SIDE = 256
RUN = "run.json"
SUMMARY = "summary.json"
SHARDS = "shards"
PARQUET = "results.parquet"
ROW_SCHEMA = 2
"""Row schema 2 added the ``review`` verdict and the ``review``, ``unsure`` and ``errors``
keys; schema 1 rows (no ``row_schema`` in run.json) have accept, reject and error only and
are read alike."""


class ResumeError(Exception):
    """The results folder cannot be resumed; the message says what to do."""


class ResultsLog:
    def __init__(self, out: Path, run_config: dict[str, Any], fresh: bool = False) -> None:
        self.out = out
        self.path = out / RESULTS
        out.mkdir(parents=True, exist_ok=True)
        run_path = out / RUN
        if fresh:
            for name in (RESULTS, RUN, SUMMARY, PARQUET):
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / HEATMAPS, ignore_errors=True)
            shutil.rmtree(out / SHARDS, ignore_errors=True)
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
            write_atomic(run_path, (json.dumps(run_config, indent=2) + "\n").encode())
        self.log = RowLog(self.path)
        try:
            self.done = {row["id"] for row in self.log.rows()}
        except LogError as e:
            raise ResumeError(f"{e} (or rerun with --fresh)") from None

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` and make them durable before returning."""
        self.log.append(rows)
        self.done.update(row["id"] for row in rows)

    def save_heatmap(self, filter_name: str, pair_id: str, heatmap: np.ndarray) -> str:
        """Write a filter's disagreement map as a colour PNG; return its path relative to out."""
        return save_heatmap(self.out, filter_name, pair_id, heatmap)

    def rows(self) -> Iterator[dict[str, Any]]:
        return self.log.rows()

    def write_summary(self, extra: dict[str, Any]) -> dict[str, Any]:
        summary = {**count_rows(self.rows()), **extra}
        write_atomic(self.out / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())
        return summary


def save_heatmap(out: Path, filter_name: str, pair_id: str, heatmap: np.ndarray) -> str:
    """Write a filter's disagreement map under ``out`` as a colour PNG; return its path
    relative to ``out``. A module function, so a Ray worker writes the same file the local
    runner would."""
    relative = f"{HEATMAPS}/{filter_name}/{pair_id}.png"
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    scaled = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0, 1)
    height, width = scaled.shape
    zoom = HEATMAP_SIDE / max(height, width)
    scaled = cv2.resize(scaled, (max(1, round(width * zoom)), max(1, round(height * zoom))), interpolation=cv2.INTER_LINEAR)
    ok, encoded = cv2.imencode(".png", cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_INFERNO))
    if not ok:
        raise OSError(f"could not encode the heatmap of {pair_id}")
    write_atomic(path, encoded.tobytes())
    return relative


def check_parquet() -> None:
    """Raise :class:`ParquetError` before any work if Parquet cannot be written."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ParquetError("--parquet needs pyarrow: pip install pyarrow (or 'ggtqc[hf]')") from None


class ParquetError(Exception):
    """Parquet was asked for and cannot be written; the message says what to install."""


def write_parquet(out: Path) -> Path:
    """Write ``out/results.jsonl`` as ``out/results.parquet``, one row per pair, through a
    temporary file and a rename. Scores become a struct per filter; a field no pair got a
    number for has Arrow's null type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ggtqc.rowlog import read_rows

    table = pa.Table.from_pylist(list(read_rows(out / RESULTS)))
    path = out / PARQUET
    tmp = path.with_name(f".{path.name}.part")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def error_kind(reason: str) -> str:
    """An error reason without its particulars: "lq: empty file (0 bytes)" -> "lq: empty file"."""
    return reason.split(" (")[0]


VERDICTS = ("accept", "review", "reject", "error")


def count_rows(rows) -> dict[str, Any]:
    verdicts: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    review: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for row in rows:
        verdicts[row["verdict"]] += 1
        failed.update(row.get("failed", ()))
        review.update(row.get("review", ()))
        if row["verdict"] == "error":
            errors.update(error_kind(reason) for reason in row.get("errors", row["reasons"]))
    return {
        "pairs": sum(verdicts.values()),
        "verdicts": {v: verdicts[v] for v in VERDICTS},
        "rejected_by": dict(failed.most_common()),
        "review_by": dict(review.most_common()),
        "errors": dict(errors.most_common()),
    }

