"""``ggtqc compare``: runs over the same LQ photos, from different generators or prompts.

Each run is the ``--out`` folder of a ``ggtqc filter`` run. A pair is matched across runs
by its LQ photo: first by the LQ file's path relative to its run's input folder (the
``lq`` of its row, e.g. ``lq/rain/0001.jpg``); a row whose path is not found in every run
(another folder layout, or a pairs file), and every LQ image held in a Parquet file (its
name, ``train-00000.parquet#12/lq``, says only its row), is matched by the LQ's content
(SHA-256), so only those images are read; where one photo is the LQ of several pairs in a run, its
k-th pair by id matches the k-th in another run. Rows without an LQ file are left out.

Rates are computed over the LQ photos found in every run, so each run is judged on the
same photos: the share accepted, and the share accepted or in review, each with a 95 %
Wilson score interval (which stays inside 0..1 and is honest at small counts). Runs are
ranked by their accept rate. The page shows, beside the table, each run's rejecting fields
and errors, and for LQ photos whose verdicts differ between runs, the LQ and every run's
target side by side with its verdict and reasons.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggtqc.calibrate import wilson
from ggtqc.exports.files import UnreadableImage, read_bytes
from ggtqc.images import ImageSource
from ggtqc.pairs import image_source
from ggtqc.report import STYLE, THUMBS, spread, read_results, thumbnail
from ggtqc.results import VERDICTS, error_kind
from ggtqc.rowlog import write_atomic


class CompareError(Exception):
    """The runs cannot be compared; the message says why."""


@dataclass
class Run:
    name: str
    folder: Path
    source: Path
    """The run's input: rows name images relative to it (``ggtqc.pairs.image_source``)."""
    rows: list[dict[str, Any]]
    by_lq: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Rows by the LQ key they are matched on."""


@dataclass
class Stats:
    name: str
    folder: str
    pairs: int
    """Pairs of this run whose LQ is in every run: the denominator of the rates."""
    all_pairs: int
    verdicts: dict[str, int]
    accept: tuple[float, float, float]
    """Rate, and the low and high ends of its 95 % interval."""
    accept_or_review: tuple[float, float, float]
    rejected_by: dict[str, int]
    errors: dict[str, int]


@dataclass
class Comparison:
    runs: list[Run]
    stats: list[Stats]
    """Ranked by accept rate, best first."""
    shared: list[str]
    """LQ keys found in every run."""
    disagree: list[str]
    """Shared LQ keys whose verdicts differ between runs."""
    matched_by_content: int


def run_names(folders: Sequence[Path], names: Sequence[str] = ()) -> list[str]:
    """``names`` if given, else each folder's name, with its parent where two would repeat."""
    if names:
        if len(names) != len(folders):
            raise CompareError(f"{len(names)} names for {len(folders)} runs; give one --name per RUN, in order")
        chosen = list(names)
    else:
        chosen = [f.resolve().name for f in folders]
        for longer in (lambda f: f"{f.resolve().parent.name}/{f.resolve().name}", str):
            repeated = {name for name, n in Counter(chosen).items() if n > 1}
            chosen = [longer(f) if name in repeated else name for f, name in zip(folders, chosen)]
    if len(set(chosen)) < len(chosen):
        raise CompareError(f"run names repeat ({', '.join(chosen)}); give each a --name")
    return chosen


def read_runs(folders: Sequence[Path], names: Sequence[str] = ()) -> tuple[list[Run], int]:
    """The runs, their rows keyed by LQ; and how many rows were matched by content."""
    runs = []
    for name, folder in zip(run_names(folders, names), folders):
        run, _, rows = read_results(folder)
        runs.append(Run(name, folder, Path(run["input"]), rows))
    paths = [{row["lq"] for row in run.rows if row.get("lq") and isinstance(image_source(run.source, row["lq"]), Path)} for run in runs]
    everywhere = set.intersection(*paths)
    by_content = 0
    for run in runs:
        for row in sorted(run.rows, key=lambda r: r["id"]):
            lq = row.get("lq")
            if not lq:
                continue
            key = lq
            if lq not in everywhere:
                digest = _content(image_source(run.source, lq))
                if digest is not None:
                    key = f"sha256:{digest}"
                    by_content += 1
            # the same photo twice in one run: its k-th row (by id) matches the k-th elsewhere
            repeat, unique = 1, key
            while unique in run.by_lq:
                unique, repeat = f"{key}#{repeat}", repeat + 1
            run.by_lq[unique] = row
    return runs, by_content


def _content(path: Path | ImageSource) -> str | None:
    digest = hashlib.sha256()
    if not isinstance(path, Path):  # an image held in a Parquet file
        try:
            digest.update(read_bytes(path))
        except (UnreadableImage, OSError):
            return None
        return digest.hexdigest()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def compare(folders: Sequence[Path], names: Sequence[str] = ()) -> Comparison:
    if len(folders) < 2:
        raise CompareError("give two or more runs to compare")
    runs, by_content = read_runs(folders, names)
    shared = sorted(set.intersection(*(set(run.by_lq) for run in runs)), key=lambda k: _label(runs, k))
    if not shared:
        raise CompareError(
            "the runs share no LQ photo (matched by path relative to each run's input, then by file content); "
            "are they runs over the same photos?"
        )
    stats = [_stats(run, shared) for run in runs]
    stats.sort(key=lambda s: (-s.accept[0], -s.accept_or_review[0], s.name))
    disagree = [key for key in shared if len({run.by_lq[key]["verdict"] for run in runs}) > 1]
    return Comparison(runs, stats, shared, disagree, by_content)


def _stats(run: Run, shared: Sequence[str]) -> Stats:
    rows = [run.by_lq[key] for key in shared]
    verdicts = Counter(row["verdict"] for row in rows)
    n = len(rows)
    rejected: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for row in rows:
        rejected.update(row.get("failed", ()))
        if row["verdict"] == "error":
            errors.update(error_kind(reason) for reason in row.get("errors", row["reasons"]))
    passed = verdicts["accept"]
    kept = passed + verdicts["review"]
    return Stats(
        run.name,
        str(run.folder),
        n,
        len(run.rows),
        {v: verdicts[v] for v in VERDICTS},
        (passed / n, *wilson(passed, n)),
        (kept / n, *wilson(kept, n)),
        dict(rejected.most_common()),
        dict(errors.most_common()),
    )


def _label(runs: Sequence[Run], key: str) -> str:
    """A shared LQ as people know it: the first run's pair id."""
    row = runs[0].by_lq.get(key)
    return row["id"] if row else key


def _top(counts: dict[str, int], n: int = 3) -> str:
    return ", ".join(f"{name} {count}" for name, count in list(counts.items())[:n]) or "-"


def _rate(rate: tuple[float, float, float]) -> str:
    return f"{rate[0]:.3f} [{rate[1]:.3f}, {rate[2]:.3f}]"


TABLE_HEADER = ("rank", "run", "pairs", "accept", "review", "reject", "error", "accept rate [95% CI]", "accept+review [95% CI]", "top rejections")


def table_rows(result: Comparison) -> list[tuple[str, ...]]:
    return [
        (str(k), s.name, str(s.pairs), *(str(s.verdicts[v]) for v in VERDICTS), _rate(s.accept), _rate(s.accept_or_review), _top(s.rejected_by))
        for k, s in enumerate(result.stats, 1)
    ]


def text_table(result: Comparison) -> str:
    """The table as aligned text, for the terminal."""
    lines = [TABLE_HEADER, *table_rows(result)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1] for line in lines)


def write_comparison(result: Comparison, out: Path, show: int = 24, workers: int = 4) -> Path:
    """Write ``out/index.html`` (with thumbnails) and ``out/table.csv``; return the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("rank", "run", "folder", "pairs", *VERDICTS, "accept_rate", "accept_low", "accept_high",
                     "accept_or_review_rate", "accept_or_review_low", "accept_or_review_high", "rejected_by", "errors"))  # fmt: skip
    for k, s in enumerate(result.stats, 1):
        writer.writerow((k, s.name, s.folder, s.pairs, *(s.verdicts[v] for v in VERDICTS), *(f"{x:.4f}" for x in s.accept),
                         *(f"{x:.4f}" for x in s.accept_or_review), _top(s.rejected_by, 99), _top(s.errors, 99)))  # fmt: skip
    write_atomic(out / "table.csv", buffer.getvalue().encode("utf-8"))

    shown = spread(result.disagree, show)
    jobs = {}
    for k, key in enumerate(shown):
        stem = f"{THUMBS}/{hashlib.sha1(key.encode()).hexdigest()[:16]}"
        first = result.runs[0]
        jobs[(key, "lq")] = (image_source(first.source, first.by_lq[key]["lq"]), f"{stem}-lq.jpg")
        for r, run in enumerate(result.runs):
            hq = run.by_lq[key].get("hq")
            jobs[(key, r)] = (image_source(run.source, hq) if hq else None, f"{stem}-hq{r}.jpg")
    (out / THUMBS).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        made = pool.map(lambda job: thumbnail(job[0], out, job[1]) if job[0] else "!no file", jobs.values())
        thumbs = dict(zip(jobs, made))
    index = out / "index.html"
    write_atomic(index, _page(result, shown, thumbs).encode("utf-8"))
    return index


def _page(result: Comparison, shown: list[str], thumbs: dict[Any, str]) -> str:
    esc = html.escape
    runs = result.runs
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ggtqc compare</title>",
        f"<style>{STYLE}{PAGE_STYLE}</style></head><body>",
        f"<h1>ggtqc compare: {len(runs)} runs</h1>",
        f"<p>{len(result.shared)} LQ photos are in every run; rates are over them, with 95&nbsp;% Wilson intervals. "
        f"{len(result.disagree)} of them get different verdicts in different runs.</p>",
        "<table class='counts'><tr>" + "".join(f"<th>{esc(h)}</th>" for h in TABLE_HEADER[:-1]) + "<th>folder</th></tr>",
    ]
    for line, s in zip(table_rows(result), result.stats):
        parts.append("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in line[:-1]) + f"<td><code>{esc(s.folder)}</code></td></tr>")
    parts.append("</table><h2>Rejections and errors per run</h2><table class='counts'><tr><th>run</th><th>field or error</th><th>pairs</th><th>share</th></tr>")
    for s in result.stats:
        for name, count in [*s.rejected_by.items(), *s.errors.items()]:
            parts.append(f"<tr><td>{esc(s.name)}</td><td>{esc(name)}</td><td>{count}</td><td>{count / s.pairs:.3f}</td></tr>")
    parts.append("</table>")
    parts.append(f"<h2>Where verdicts disagree: {len(result.disagree)} LQ photos ({len(shown)} shown)</h2>")
    for key in shown:
        first = runs[0].by_lq[key]
        cells = [_image(thumbs[(key, "lq")], "LQ", first["lq"], "")]
        for r, run in enumerate(runs):
            row = run.by_lq[key]
            why = f"<div class='why'>{esc('; '.join(row['reasons']))}</div>" if row["reasons"] else ""
            cells.append(_image(thumbs[(key, r)], f"{run.name}: {row['verdict']}", row.get("hq") or "", why))
        parts.append(f"<div class='photo'><div class='id'>{esc(first['id'])}</div>{''.join(cells)}</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


PAGE_STYLE = """
.photo { margin: 0 0 1.5em 0; }
figure.side { display: inline-block; vertical-align: top; margin: 0 8px 0 0; max-width: 260px; }
figure.side img { height: 160px; border: 1px solid #ccc; }
figure.side .missing { display: inline-block; height: 160px; width: 120px; background: #eee; font-size: 12px; padding: 4px; box-sizing: border-box; }
figcaption { font-weight: 600; }
"""


def _image(thumb: str, caption: str, title: str, below: str) -> str:
    esc = html.escape
    if thumb.startswith("!"):
        picture = f"<span class='missing'>{esc(thumb[1:])}</span>"
    else:
        picture = f"<img src='{esc(thumb)}' alt='{esc(caption)}' title='{esc(title)}'>"
    return f"<figure class='side'>{picture}<figcaption>{esc(caption)}</figcaption>{below}</figure>"
