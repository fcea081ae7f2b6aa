"""``ggtqc export RUN --format F --out DEST``: a finished run's pairs as a training dataset.

One pass over ``RUN/results.jsonl`` picks the pairs whose verdict is asked for (accepted
only by default) and hands them, one by one, to a format:

- ``folders``: ``DEST/lq``, ``DEST/hq`` of hard links (copies across file systems), named
  by pair id, or by a flat safe key with ``rename`` (what ``filter --export`` writes);
  images held in a Parquet pairs file are written from their bytes (``ggtqc.exports.files``);
- ``basicsr``: flat ``lq/``, ``hq/`` and ``meta_info.txt`` as BasicSR's PairedImageDataset
  reads them;
- ``hf``: Parquet shards with ``Image`` columns and a dataset card (``ggtqc.exports.hf``);
- ``webdataset``: tar shards of ``{key}.lq.*``, ``{key}.hq.*``, ``{key}.json``.

A pair's *key* is its id made safe for a flat file name and a WebDataset key: ``/``
becomes ``__``, anything but letters, digits, ``_`` and ``-`` becomes ``_`` (so no dots);
two ids that would share a key are told apart by a hash of the id. Every format is
idempotent: a rerun rewrites only what changed (``ggtqc.exports.shards`` for the sharded
ones) and removes what is no longer exported. ``DEST`` holds a ``.ggtqc-export`` marker
naming its format and the last export's summary; a non-empty ``DEST`` without one, or with
another format's, is refused rather than touched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggtqc.decide import read_run
from ggtqc.exports.files import Picture, UnreadableImage, exists, stat_of
from ggtqc.pairs import image_source
from ggtqc.results import RESULTS, VERDICTS
from ggtqc.rowlog import LogError, read_rows, write_atomic

MARKER = ".ggtqc-export"
FORMATS = ("folders", "basicsr", "hf", "webdataset")
GENERATION_LOG = "generation.jsonl"  # as ggtqc.generate writes it into a pairs folder
LAYOUT = 1  # of the sharded formats' contents; a change rewrites every shard on the next export


class ExportError(Exception):
    """An export that cannot start; the message says what to do."""


@dataclass
class Item:
    """One pair to export: its results row, safe key, source files and generation row."""

    row: dict[str, Any]
    key: str
    lq: Picture
    hq: Picture
    """A file, or an image held in a Parquet pairs file (``ggtqc.exports.files``)."""
    generation: dict[str, Any] | None = None

    def stamp(self) -> list[Any]:
        """What the exported pair depends on: its row, key, generation row and both files' size
        and time (of an image in a Parquet file, the Parquet file's)."""
        stats = [stat_of(p) for p in (self.lq, self.hq)]
        return [self.row, self.key, self.generation, [[s.st_size, s.st_mtime_ns] for s in stats]]


@dataclass
class Selection:
    """The pairs of a run to export, read lazily; counts fill in as they are read."""

    rows: Iterable[dict[str, Any]]
    source: Path
    """The run's input: rows name images relative to it (``ggtqc.pairs.image_source``)."""
    verdicts: tuple[str, ...]
    generation: GenerationIndex | None = None
    by_verdict: Counter[str] = field(default_factory=Counter)
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    models: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    _cells: bool = field(default=False, repr=False)

    def __iter__(self) -> Iterator[Item]:
        try:
            yield from self._items()
        finally:
            if self.generation:
                self.generation.close()
            if self._cells:
                from ggtqc.parquet import close_readers

                close_readers()  # the slices of images the export read

    def _items(self) -> Iterator[Item]:
        keys = Keys()
        for row in self.rows:
            if row.get("verdict") not in self.verdicts:
                continue
            lq, hq = (image_source(self.source, row[side]) if row.get(side) else None for side in ("lq", "hq"))
            self._cells = self._cells or any(p is not None and not isinstance(p, Path) for p in (lq, hq))
            if lq is None or hq is None or not exists(lq) or not exists(hq):
                self.missing += 1
                if len(self.missing_examples) < 5:
                    self.missing_examples.append(row["id"])
                continue
            self.by_verdict[row["verdict"]] += 1
            generation = self.generation.get(row["id"]) if self.generation else None
            if generation:
                if generation.get("model"):
                    self.models[generation["model"]] += 1
                if isinstance(generation.get("cost_usd"), (int, float)):
                    self.cost_usd += generation["cost_usd"]
            yield Item(row, keys.key(row["id"]), lq, hq, generation)


def safe_key(pair_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", pair_id.replace("/", "__")) or "_"


class Keys:
    """Safe keys, unique within one export: a later id whose key is taken gets a hash suffix."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def key(self, pair_id: str) -> str:
        key = safe_key(pair_id)
        if key in self.taken:
            key = f"{key}-{hashlib.sha1(pair_id.encode()).hexdigest()[:10]}"
        self.taken.add(key)
        return key


class GenerationIndex:
    """Where each id's last row sits in a pairs folder's ``generation.jsonl``; rows are
    read on demand, so a 100K-photo log is never held in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets: dict[str, int] = {}
        with path.open("rb") as f:
            offset = 0
            for line in f:
                if line.endswith(b"\n"):
                    try:
                        pair_id = json.loads(line)["id"]
                    except (ValueError, KeyError, TypeError):
                        pair_id = None
                    if isinstance(pair_id, str):
                        self.offsets[pair_id] = offset
                offset += len(line)
        self._file = path.open("rb")

    def close(self) -> None:
        self._file.close()

    def get(self, pair_id: str) -> dict[str, Any] | None:
        offset = self.offsets.get(pair_id)
        if offset is None:
            return None
        self._file.seek(offset)
        row = json.loads(self._file.readline())
        row.pop("id", None)
        return row


def parse_verdicts(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [v for v in chosen if v not in VERDICTS]
    if unknown or not chosen:
        raise ExportError(f"--verdicts {text!r}: expected a comma list of {', '.join(VERDICTS)}")
    return chosen


def pairs_root(run: dict[str, Any]) -> Path:
    """The folder that rows' ``lq`` and ``hq`` paths are relative to."""
    if not isinstance(run.get("input"), str):
        raise ExportError("the run's run.json names no input folder; rerun 'ggtqc filter'")
    source = Path(run["input"])
    if source.is_dir():
        return source
    if source.is_file():
        return source.parent
    raise ExportError(f"the run's input {source} is gone; the pairs must stay where 'ggtqc filter' read them")


def check_export_dir(dest: Path, fmt: str = "folders") -> dict[str, Any]:
    """Refuse, before any work, a folder an export of ``fmt`` may not write; its marker, if any."""
    marker = dest / MARKER
    previous: dict[str, Any] = {}
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} is a file; choose a folder to export to")
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            previous = {"format": "folders"}  # the plain-text marker of earlier 'filter --export'
        if previous.get("format", "folders") != fmt:
            raise ExportError(f"{dest} holds a {previous.get('format')} export; choose another folder for --format {fmt}")
    elif dest.is_dir() and any(dest.iterdir()):
        raise ExportError(f"{dest} is not empty and was not made by ggtqc export; choose a new folder")
    return previous


def claim(dest: Path, fmt: str) -> dict[str, Any]:
    """Make ``dest`` an export folder of ``fmt``, or refuse; the previous marker, if any."""
    previous = check_export_dir(dest, fmt)
    marker = dest / MARKER
    dest.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        write_marker(dest, {"format": fmt})
    return previous


def write_marker(dest: Path, content: dict[str, Any]) -> None:
    body = {"made_by": "ggtqc export; rewritten by each export into this folder", **content}
    write_atomic(dest / MARKER, (json.dumps(body, indent=2) + "\n").encode())


def export_run(
    run_dir: Path,
    dest: Path,
    fmt: str = "folders",
    verdicts: tuple[str, ...] = ("accept",),
    shard_size: int = 1000,
    rename: bool = False,
) -> dict[str, Any]:
    """Export a run's pairs of ``verdicts`` to ``dest`` in ``fmt``; the summary written."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    run = read_run(run_dir)
    root = pairs_root(run)
    if fmt == "hf":
        from ggtqc.exports import hf

        hf.require()
    log = root / GENERATION_LOG
    selection = Selection(_rows(run_dir), Path(run["input"]), verdicts, GenerationIndex(log) if log.is_file() else None)
    claim(dest, fmt)
    settings = {"format": fmt, "verdicts": list(verdicts)}
    with _unreadable():
        if fmt in ("folders", "basicsr"):
            from ggtqc.exports.folders import export_folders

            settings["rename"] = rename or fmt == "basicsr"
            written = export_folders(selection, dest, basicsr=fmt == "basicsr", rename=rename)
        else:
            from ggtqc.exports import hf, shards, webdataset

            settings.update(shard_size=shard_size, layout=LAYOUT)
            writer = hf.ParquetShards(run) if fmt == "hf" else webdataset.TarShards()
            written = shards.write_shards(selection, dest, writer, shard_size, settings)
            if fmt == "hf":
                hf.write_card(dest, run, run_dir, selection, written, settings)
    summary = {
        **settings,
        "run": str(run_dir.resolve()),
        "pairs": sum(selection.by_verdict.values()),
        "by_verdict": {v: selection.by_verdict[v] for v in VERDICTS if selection.by_verdict[v]},
        **written,
        "missing_files": selection.missing,
        **({"missing_examples": selection.missing_examples} if selection.missing else {}),
    }
    write_marker(dest, {"format": fmt, "summary": summary})
    return summary


@contextmanager
def _unreadable() -> Iterator[None]:
    """An image of a Parquet pairs file that cannot be read any more stops the export in one line."""
    try:
        yield
    except UnreadableImage as e:
        raise ExportError(f"cannot export {e}; the Parquet file changed since 'ggtqc filter' read it? rerun it") from None


def _rows(run_dir: Path) -> Iterator[dict[str, Any]]:
    try:
        yield from read_rows(run_dir / RESULTS)
    except LogError as e:
        raise ExportError(str(e)) from None


def export_accepted(rows: Iterable[dict[str, Any]], source: Path, dest: Path) -> int:
    """``filter --export DIR``: the accepted pairs of ``rows`` (a run of ``source``) in the ``folders`` format."""
    from ggtqc.exports.folders import export_folders

    claim(dest, "folders")
    selection = Selection(rows, source, ("accept",))
    with _unreadable():
        written = export_folders(selection, dest, basicsr=False, rename=False)
    summary = {"format": "folders", "verdicts": ["accept"], "pairs": sum(selection.by_verdict.values()), **written}
    write_marker(dest, {"format": "folders", "summary": summary})
    return summary["pairs"]
