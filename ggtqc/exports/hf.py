"""The ``hf`` format: Parquet shards ``DEST/data/train-00000.parquet``, ... and a dataset card.

Columns: ``id``, ``key``, ``lq`` and ``hq`` as the ``datasets`` library's ``Image`` feature
(its Arrow layout, a struct of ``bytes`` and ``path``, named as such in the schema's
``huggingface`` metadata, so ``load_dataset("parquet", ...)`` decodes them to PIL images),
``verdict``, ``reasons``, ``failed``, ``review``, ``scores`` (a struct per filter of its
fields, from run.json; a score a filter never computed is null), ``lq_file`` and
``hq_file`` (the paths in the pairs folder; ``pairs.parquet#12/lq`` for an image that was
held in a Parquet file), and from the pairs folder's
``generation.jsonl``: ``model``, ``prompt``, ``cost_usd`` and the whole row as JSON in
``generation`` (null for pairs that ggtqc did not generate). Row groups hold
``ROW_GROUP`` pairs: the most images held in memory at once.

``DEST/README.md`` is the dataset card: YAML front matter that points the Hub and
``load_dataset(DEST)`` at the shards, then counts, QC settings, thresholds and the
labels and calibration behind them. Writing needs only ``pyarrow`` (``pip install
'ggtqc[hf]'``); upload with the Hub's own tools (``hf upload``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ggtqc.export import ExportError, Item, Selection
from ggtqc.exports.shards import DONE, image_of, record
from ggtqc.results import RESULTS, SUMMARY, VERDICTS, count_rows
from ggtqc.rowlog import read_rows, write_atomic

ROW_GROUP = 100
CARD = "README.md"


def require() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ExportError("--format hf needs pyarrow: pip install 'ggtqc[hf]'") from None


def score_fields(run: dict[str, Any]) -> dict[str, list[str]]:
    filters = run["filters"]
    order = [name for name in run.get("order", []) if name in filters] + [n for n in filters if n not in run.get("order", [])]
    return {name: list(filters[name].get("thresholds", {})) for name in order if filters[name].get("thresholds")}


class ParquetShards:
    folder = "data"
    pattern = "train-{index:05d}.parquet"

    def __init__(self, run: dict[str, Any]) -> None:
        import pyarrow as pa

        self.pa = pa
        self.fields = score_fields(run)
        image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        strings = pa.list_(pa.string())
        columns = [
            ("id", pa.string()), ("key", pa.string()), ("lq", image), ("hq", image), ("verdict", pa.string()),
            ("reasons", strings), ("failed", strings), ("review", strings),
        ]  # fmt: skip
        if self.fields:
            columns.append(("scores", pa.struct([(f, pa.struct([(k, pa.float64()) for k in ks])) for f, ks in self.fields.items()])))
        columns += [
            ("lq_file", pa.string()), ("hq_file", pa.string()), ("model", pa.string()), ("prompt", pa.string()),
            ("cost_usd", pa.float64()), ("generation", pa.string()),
        ]  # fmt: skip
        features = {"lq": {"_type": "Image"}, "hq": {"_type": "Image"}}
        self.schema = pa.schema(columns, metadata={"huggingface": json.dumps({"info": {"features": features}})})

    def write(self, path: Path, items: list[Item]) -> None:
        import pyarrow.parquet as pq

        with pq.ParquetWriter(path, self.schema, compression="zstd") as writer:
            for start in range(0, len(items), ROW_GROUP):
                rows = [self._row(item) for item in items[start : start + ROW_GROUP]]
                writer.write_table(self.pa.Table.from_pylist(rows, schema=self.schema), row_group_size=ROW_GROUP)

    def _row(self, item: Item) -> dict[str, Any]:
        row = record(item)
        for side in ("lq", "hq"):
            source = getattr(item, side)
            extension, converted = image_of(source)
            data = source.read_bytes() if converted is None else converted  # an image from a Parquet file: its bytes, undecoded
            row[side] = {"bytes": data, "path": f"{item.key}{extension}"}
        scores = row.pop("scores") or {}
        if self.fields:
            row["scores"] = {f: {k: _number((scores.get(f) or {}).get(k)) for k in ks} for f, ks in self.fields.items()}
        generation = row.pop("generation") or {}
        row["model"] = generation.get("model")
        row["prompt"] = generation.get("prompt")
        row["cost_usd"] = _number(generation.get("cost_usd"))
        row["generation"] = json.dumps(generation, ensure_ascii=False) if generation else None
        return row


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def write_card(dest: Path, run: dict[str, Any], run_dir: Path, selection: Selection, written: dict[str, Any], settings: dict[str, Any]) -> None:
    """The dataset card, rewritten on every export."""
    totals = count_rows(read_rows(run_dir / RESULTS))
    summary_path = run_dir / SUMMARY
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    exported = sum(selection.by_verdict.values())
    lines = [
        "---",
        "task_categories:",
        "- image-to-image",
        "tags:",
        "- image-restoration",
        "- ggtqc",
        f"size_categories:\n- {_size_category(exported)}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {ParquetShards.folder}/train-*.parquet",
        "---",
        "",
        "# LQ/HQ restoration pairs",
        "",
        f"{exported} pairs of low-quality (`lq`) and high-quality (`hq`) images, exported by `ggtqc export --format hf` "
        f"from a ggtqc quality-control run: the pairs whose verdict is {' or '.join(settings['verdicts'])}, "
        f"in {written['shards']['total']} Parquet shards of up to {settings['shard_size']} pairs.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'pairs = load_dataset("parquet", data_files="{ParquetShards.folder}/*.parquet", split="train")',
        "```",
        "",
        "## Counts",
        "",
        "| verdict | in the run | exported |",
        "| --- | --- | --- |",
        *(f"| {v} | {totals['verdicts'].get(v, 0)} | {selection.by_verdict.get(v, 0)} |" for v in VERDICTS),
        f"| all | {totals['pairs']} | {exported} |",
        "",
    ]
    if selection.missing:
        lines += [f"{selection.missing} pairs of those verdicts were left out: their files are gone.", ""]
    if totals["rejected_by"]:
        lines += ["Rejections by field: " + ", ".join(f"`{k}` {n}" for k, n in totals["rejected_by"].items()) + ".", ""]
    lines += _generation_lines(selection)
    lines += _qc_lines(run, summary)
    lines += _labels_lines(run_dir, summary)
    lines += [
        "## Columns",
        "",
        "`id` (the pair's id in ggtqc), `key` (the id as a flat name), `lq`, `hq` (images, the files' own bytes for PNG, "
        "JPEG and WebP, else lossless PNG), `verdict`, `reasons`, `failed` and `review` (the fields that rejected the pair "
        "or put it in review), `scores` (per filter and field; null where not computed), `lq_file`, `hq_file` (paths in "
        "the pairs folder, or `pairs.parquet#12/lq` for an image read from a Parquet file's row), `model`, `prompt`, "
        "`cost_usd` (estimated, in US dollars) and `generation` (the whole generation record as JSON) for pairs that "
        "`ggtqc generate` made.",
        "",
        f"Files under `{DONE}/` and `.ggtqc-export` are ggtqc's resume markers; leave them out of an upload "
        f"(`hf upload NAME . --repo-type dataset --exclude '.ggtqc*'`).",
        "",
    ]
    write_atomic(dest / CARD, "\n".join(lines).encode())


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _generation_lines(selection: Selection) -> list[str]:
    if not selection.models:
        return []
    models = ", ".join(f"`{m}` ({n})" for m, n in selection.models.most_common())
    return ["## Generation", "", f"HQ targets made by {models}; estimated cost of the exported pairs: "
            f"{selection.cost_usd:.2f} USD.", ""]  # fmt: skip


def _qc_lines(run: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    lines = ["## Quality control", "", f"ggtqc {summary.get('ggtqc_version', '')}".rstrip() + ", filters in the order they ran"
             + (", every filter scoring every pair." if run.get("all_scores") else "; a rejected pair skips the later filters.")]  # fmt: skip
    lines += ["", "| filter | version | field | better | threshold | review margin |", "| --- | --- | --- | --- | --- | --- |"]
    for name, fields in score_fields(run).items():
        spec = run["filters"][name]
        for field in fields:
            threshold = spec["thresholds"][field]
            lines.append(
                f"| {name} | {spec.get('version', '')} | {field} | {spec.get('better', {}).get(field, '')} | "
                f"{'record only' if threshold is None else threshold} | {spec.get('margins', {}).get(field, '')} |"
            )
    settings = {name: spec.get("settings") for name, spec in run["filters"].items() if spec.get("settings")}
    if settings:
        lines += ["", "Filter settings: " + "; ".join(f"`{n}` {json.dumps(s)}" for n, s in settings.items()) + "."]
    return lines + [""]


def _labels_lines(run_dir: Path, summary: dict[str, Any]) -> list[str]:
    from ggtqc.labels import LABELS, read_labels

    lines = ["## Review and calibration", ""]
    labels = read_labels(run_dir / LABELS)
    if labels.latest:
        consensus = labels.consensus()
        good = sum(1 for c in consensus.values() if c["label"] == "accept")
        audit = sum(1 for c in consensus.values() if c["audit"])
        lines.append(
            f"{_count(len(labels.latest), 'label')} by {_count(len(labels.reviewers()), 'reviewer')}; "
            f"{_count(len(consensus), 'pair')} decided by them "
            f"({good} good, {len(consensus) - good} faulty), {audit} of them in the audit sample (a uniformly random draw)."
        )
    else:
        lines.append("No pair of this run was labelled by a person.")
    decided = summary.get("decided")
    if decided:
        config = decided.get("config")
        lines += ["", f"Verdicts were re-decided from the stored scores with `{Path(config).name if config else 'the defaults'}`."]
        claim = _calibration_claim(Path(config)) if config else []
        if claim:
            lines += ["Its calibration: " + " ".join(claim)]
    else:
        lines += ["", "Thresholds are as the run was filtered (not re-decided after labelling)."]
    return lines + [""]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _calibration_claim(config: Path) -> list[str]:
    """The comment lines 'ggtqc calibrate' heads its thresholds file with, if it is still there."""
    try:
        text = config.read_text(encoding="utf-8")
    except OSError:
        return []
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").strip())
    return header[1:] if header and header[0].startswith("ggtqc calibrate") else []
