"""``ggtqc report``: a results folder as a page to look at, one section per reason.

Thresholds are chosen by looking at what they reject. The page shows, for every field that
rejected pairs, a spread of examples (LQ, HQ and the filter's heatmap where it drew one,
with the reasons and that filter's scores), then error rows by kind, then a sample of
accepted pairs to spot-check. It is written to its own folder (``index.html`` and
``thumbs/``); the results and the pairs are only read.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import urllib.parse
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ggtqc.images import DecodeError, Source, decode_image
from ggtqc.pairs import image_source
from ggtqc.results import RESULTS, RUN, count_rows, error_kind
from ggtqc.rowlog import LogError, read_rows, write_atomic

THUMB_SIDE = 256
THUMBS = "thumbs"


class ReportError(Exception):
    """The results folder cannot be reported on; the message says what to do."""


@dataclass(frozen=True)
class Picked:
    """Pairs shown in each section, in section order."""

    by_field: dict[str, list[dict[str, Any]]]
    by_review: dict[str, list[dict[str, Any]]]
    by_error: dict[str, list[dict[str, Any]]]
    accepted: list[dict[str, Any]]
    error_totals: dict[str, int]


def spread(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items evenly spaced over ``items`` (all of them if fewer), so one run of
    similar ids does not fill a section."""
    if len(items) <= count:
        return list(items)
    return [items[round(k * (len(items) - 1) / max(count - 1, 1))] for k in range(count)]


def pick(rows: Sequence[dict[str, Any]], per_reason: int, accepted: int) -> Picked:
    by_field: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_review: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_error: dict[str, list[dict[str, Any]]] = defaultdict(list)
    kept = []
    for row in sorted(rows, key=lambda r: r["id"]):
        if row["verdict"] == "reject":
            for name in row.get("failed", ()):
                by_field[name].append(row)
        elif row["verdict"] == "review":
            for name in row.get("review", ()):
                by_review[name].append(row)
        elif row["verdict"] == "error":
            by_error[_error_kind(row)].append(row)
        else:
            kept.append(row)
    order = lambda groups: sorted(groups, key=lambda k: (-len(groups[k]), k))  # noqa: E731  most common first
    return Picked(
        {name: spread(by_field[name], per_reason) for name in order(by_field)},
        {name: spread(by_review[name], per_reason) for name in order(by_review)},
        {kind: spread(by_error[kind], per_reason) for kind in order(by_error)},
        spread(kept, accepted),
        {kind: len(group) for kind, group in by_error.items()},
    )


def write_report(qc: Path, out: Path, per_reason: int = 12, accepted: int = 12, workers: int = 4) -> Path:
    """Write ``out/index.html`` (and its thumbnails) for the results in ``qc``; return its path."""
    run, _, rows = read_results(qc)
    source = Path(run["input"])
    picked = pick(rows, per_reason, accepted)
    groups = (*picked.by_field.values(), *picked.by_review.values(), *picked.by_error.values(), picked.accepted)
    shown = {row["id"]: row for group in groups for row in group}
    (out / THUMBS).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        thumbs = dict(zip(shown, pool.map(lambda row: _thumbs(row, source, out), shown.values())))
    page = _page(qc, out, run, count_rows(rows), picked, thumbs)
    index = out / "index.html"
    write_atomic(index, page.encode("utf-8"))
    return index


def read_results(qc: Path) -> tuple[dict[str, Any], Path, list[dict[str, Any]]]:
    """A results folder's ``run.json``, the folder its rows' paths are relative to, and its rows."""
    if not (qc / RESULTS).is_file() or not (qc / RUN).is_file():
        raise ReportError(f"{qc} holds no ggtqc results ({RESULTS} and {RUN}); give the --out folder of a 'ggtqc filter' run")
    try:
        run = json.loads((qc / RUN).read_text(encoding="utf-8"))
        source = Path(run["input"])
    except (ValueError, KeyError, TypeError):
        raise ReportError(f"{qc / RUN} is damaged (not the JSON that 'ggtqc filter' writes); rerun the filter with --fresh") from None
    root = source.parent if source.is_file() else source  # a pairs file lists paths relative to its folder
    try:
        rows = list(read_rows(qc / RESULTS))  # read only: a run may still be writing to it
    except LogError as e:
        raise ReportError(str(e)) from None
    return run, root, rows


def _error_kind(row: dict[str, Any]) -> str:
    """The first reason without its particulars, as the summary counts errors."""
    return error_kind(row["reasons"][0]) if row["reasons"] else "error"


def _thumbs(row: dict[str, Any], source: Path, out: Path) -> dict[str, str]:
    """``{side: thumbnail path relative to out, or "!" + why not}`` for LQ and HQ, the
    images found where the rows of a run of ``source`` say (``pairs.image_source``)."""
    name = hashlib.sha1(row["id"].encode()).hexdigest()[:16]
    found = {}
    for side in ("lq", "hq"):
        if not row.get(side):
            found[side] = "!no file"
            continue
        found[side] = thumbnail(image_source(source, row[side]), out, f"{THUMBS}/{name}-{side}.jpg")
    return found


def thumbnail(image_path: Source, out: Path, relative: str) -> str:
    """Write a JPEG of ``image_path`` (a file or a Parquet cell) at most :data:`THUMB_SIDE` px wide or high to
    ``out/relative``; return ``relative``, or ``"!"`` and why it could not."""
    try:
        image = decode_image(image_path)
    except DecodeError as e:
        return f"!{e}"
    height, width = image.shape[:2]
    zoom = min(1.0, THUMB_SIDE / max(height, width))
    small = cv2.resize(image, (max(1, round(width * zoom)), max(1, round(height * zoom))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(small[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return "!could not make a thumbnail"
    write_atomic(out / relative, encoded.tobytes())
    return relative


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table.counts td, table.counts th { padding: 0.1em 0.8em; text-align: left; }
.pair { display: inline-block; vertical-align: top; margin: 0 1em 1.2em 0; max-width: 800px; }
.pair img { height: 160px; margin-right: 4px; border: 1px solid #ccc; }
.pair .missing { display: inline-block; height: 160px; width: 120px; margin-right: 4px; background: #eee; font-size: 12px; padding: 4px; box-sizing: border-box; }
.id { font-weight: 600; } .why { color: #a00; } .scores { color: #555; font-size: 12px; }
"""


def _page(qc: Path, out: Path, run: dict[str, Any], counts: dict[str, Any], picked: Picked, thumbs: dict[str, dict[str, str]]) -> str:
    esc = html.escape
    heatmap_base = Path(os.path.relpath(qc, out))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ggtqc report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>ggtqc report</h1><p>Results in <code>{esc(str(qc))}</code> of pairs in <code>{esc(run['input'])}</code>.</p>",
        "<table class='counts'><tr><th>verdict</th><th>pairs</th></tr>",
        *(f"<tr><td>{v}</td><td>{n}</td></tr>" for v, n in counts["verdicts"].items()),
        "</table><h2>Rejected by</h2><table class='counts'><tr><th>field</th><th>pairs</th><th>threshold</th></tr>",
    ]
    for name, n in counts["rejected_by"].items():
        filter_name, field = name.split(".", 1)
        threshold = run.get("filters", {}).get(filter_name, {}).get("thresholds", {}).get(field)
        better = run.get("filters", {}).get(filter_name, {}).get("better", {}).get(field)
        rule = "" if threshold is None else f"{'≥' if better == 'higher' else '≤'} {threshold:g}"
        parts.append(f"<tr><td><a href='#{esc(name)}'>{esc(name)}</a></td><td>{n}</td><td>{rule}</td></tr>")
    parts.append("</table>")
    for name, rows in picked.by_field.items():
        filter_name = name.split(".", 1)[0]
        parts.append(f"<h2 id='{esc(name)}'>{esc(name)}: {_count_pairs(counts['rejected_by'][name])} ({len(rows)} shown)</h2>")
        parts.extend(_pair_html(row, thumbs[row["id"]], heatmap_base, filter_name) for row in rows)
    if picked.by_review:
        parts.append("<h2>In review</h2><p>Pairs whose scores lie within a field's review margin of its threshold, "
                     "or that a filter could not judge: <code>ggtqc review</code> is where a person decides them.</p>")
        for name, rows in picked.by_review.items():
            filter_name = name.split(".", 1)[0]
            parts.append(f"<h3 id='review-{esc(name)}'>{esc(name)}: {_count_pairs(counts['review_by'][name])} ({len(rows)} shown)</h3>")
            parts.extend(_pair_html(row, thumbs[row["id"]], heatmap_base, filter_name) for row in rows)
    if picked.by_error:
        parts.append("<h2>Errors</h2>")
        for kind, rows in picked.by_error.items():
            parts.append(f"<h3>{esc(kind)}: {_count_pairs(picked.error_totals[kind])} ({len(rows)} shown)</h3>")
            parts.extend(_pair_html(row, thumbs[row["id"]], heatmap_base, None) for row in rows)
    parts.append(f"<h2>Accepted: a sample of {len(picked.accepted)}</h2>")
    parts.extend(_pair_html(row, thumbs[row["id"]], heatmap_base, None) for row in picked.accepted)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _number(value: Any) -> str:
    """A score as the page shows it: a dash for a score that was not measured."""
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _count_pairs(count: int) -> str:
    return f"{count} pair" if count == 1 else f"{count} pairs"


def _pair_html(row: dict[str, Any], thumbs: dict[str, str], heatmap_base: Path, filter_name: str | None) -> str:
    esc = html.escape
    images = []
    for side in ("lq", "hq"):
        thumb = thumbs[side]
        if thumb.startswith("!"):
            images.append(f"<span class='missing'>{side.upper()}: {esc(thumb[1:])}</span>")
        else:
            images.append(f"<img src='{esc(thumb)}' alt='{side}' title='{side.upper()}: {esc(str(row.get(side)))}'>")
    heatmap = row.get("heatmaps", {}).get(filter_name) if filter_name else None
    if heatmap:
        source = urllib.parse.quote((heatmap_base / heatmap).as_posix())  # the file is named by the pair id
        images.append(f"<img src='{esc(source)}' alt='heatmap' title='{esc(filter_name)} heatmap'>")
    scores = row.get("scores", {}).get(filter_name, {}) if filter_name else {}
    score_text = ", ".join(f"{k} {_number(v)}" for k, v in scores.items())
    return (
        f"<div class='pair'><div class='id'>{esc(row['id'])}</div>{''.join(images)}"
        f"<div class='why'>{esc('; '.join(row['reasons']))}</div>"
        + (f"<div class='scores'>{esc(filter_name)}: {esc(score_text)}</div>" if score_text else "")
        + "</div>"
    )
