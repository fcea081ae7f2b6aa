"""Agreement between the ``judge`` filter and people's labels of a run's pairs.

    GEMINI_API_KEY=... python -m benchmarks.judge_agreement qc/                 # qc/labels.jsonl
    GEMINI_API_KEY=... python -m benchmarks.judge_agreement qc/ --labels mine.jsonl --limit 200 --audit-only

Labels are ``labels.jsonl`` lines as ``ggtqc review`` writes them (yours, or a user's). Pairs
with a consensus ``accept`` or ``reject`` are judged (``unsure`` is left out), through the
judge's cache, so a second run sends nothing. The judge's verdict is its fields under their
default thresholds: accept when it finds the pair faithful, of quality 3 or more, with no
major defect. Reported: the confusion matrix, accuracy, Cohen's kappa, the share of
people's accepts the judge accepts and of their rejects it rejects, and judge errors
(counted apart, never as agreement). docs/judge.md describes the method.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import click
import torch

from ggtqc.batch import Batch
from ggtqc.decide import read_run
from ggtqc.images import DecodeError, decode_image
from ggtqc.labels import read_labels
from ggtqc.plugins.gemini_client import KEY_VARIABLES, key_is_set
from ggtqc.plugins.judge import Judge
from ggtqc.results import RESULTS
from ggtqc.rowlog import read_rows


def judge_verdict(instance: Judge, values: dict[str, float], unsure: str | None) -> str:
    if unsure:
        return "error"
    for f in instance.fields:
        value = values[f.name]
        if f.threshold is None or math.isnan(value):
            continue
        if (value < f.threshold) if f.better == "higher" else (value > f.threshold):
            return "reject"
    return "accept"


def kappa(matrix: Counter) -> float:
    n = sum(matrix.values())
    if not n:
        return math.nan
    observed = (matrix["accept", "accept"] + matrix["reject", "reject"]) / n
    people = {v: sum(c for (p, _), c in matrix.items() if p == v) / n for v in ("accept", "reject")}
    judge = {v: sum(c for (_, j), c in matrix.items() if j == v) / n for v in ("accept", "reject")}
    expected = sum(people[v] * judge[v] for v in ("accept", "reject"))
    return (observed - expected) / (1 - expected) if expected < 1 else math.nan


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), help="Labels file  [default: RUN/labels.jsonl]")
@click.option("--audit-only", is_flag=True, help="Only pairs labelled in the audit sample (agreement on a whole run).")
@click.option("--limit", type=click.IntRange(min=1), help="Judge at most this many labelled pairs.")
@click.option("--model", default=Judge.options["model"], show_default=True)
@click.option("--base-url", default="", help="A compatible server or gateway.")
def main(run_dir: Path, labels_path: Path | None, audit_only: bool, limit: int | None, model: str, base_url: str) -> None:
    if not key_is_set():
        click.echo(f"no Gemini API key: set {KEY_VARIABLES[0]} to measure agreement", err=True)
        sys.exit(2)
    run = read_run(run_dir)
    root = Path(run["input"])
    root = root if root.is_dir() else root.parent
    labels = read_labels(labels_path or run_dir / "labels.jsonl")
    consensus = {i: c for i, c in labels.consensus().items() if c.get("label") in ("accept", "reject")}
    if audit_only:
        consensus = {i: c for i, c in consensus.items() if c["audit"]}
    rows = {row["id"]: row for row in read_rows(run_dir / RESULTS) if row["id"] in consensus and row.get("lq") and row.get("hq")}
    ids = sorted(rows)[:limit]
    instance = Judge(model=model, base_url=base_url, pairs="all")
    instance.setup(torch.device("cpu"))
    matrix: Counter = Counter()
    errors = 0
    for start in range(0, len(ids), 8):
        chunk, lq, hq = [], [], []
        for pair_id in ids[start : start + 8]:
            try:
                images = decode_image(root / rows[pair_id]["lq"]), decode_image(root / rows[pair_id]["hq"])
            except (DecodeError, OSError):
                continue  # a pair that does not decode has no judge answer to compare
            chunk.append(pair_id)
            lq.append(images[0])
            hq.append(images[1])
        reasons = [rows[i].get("reasons", []) for i in chunk]
        scores = instance.score(Batch(chunk, lq, hq, reasons=reasons))
        for k, pair_id in enumerate(chunk):
            verdict = judge_verdict(instance, {n: v[k] for n, v in scores.values.items()}, scores.unsure[k])
            if verdict == "error":
                errors += 1
            else:
                matrix[consensus[pair_id]["label"], verdict] += 1
    n = sum(matrix.values())
    people_accept = matrix["accept", "accept"] + matrix["accept", "reject"]
    people_reject = matrix["reject", "accept"] + matrix["reject", "reject"]
    result = {
        "pairs": n,
        "judge_errors": errors,
        "confusion (people, judge)": {f"{p}/{j}": matrix[p, j] for p in ("accept", "reject") for j in ("accept", "reject")},
        "accuracy": round((matrix["accept", "accept"] + matrix["reject", "reject"]) / n, 4) if n else None,
        "kappa": round(kappa(matrix), 4) if n else None,
        "judge_accepts_of_people_accepts": round(matrix["accept", "accept"] / people_accept, 4) if people_accept else None,
        "judge_rejects_of_people_rejects": round(matrix["reject", "reject"] / people_reject, 4) if people_reject else None,
        "model": model,
        "spent": instance.accounting(),
    }
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
