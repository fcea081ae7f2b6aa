"""Pair discovery: from a pairs folder or a pairs file to a sorted list of pairs.

A pairs folder holds an LQ and an HQ folder (``lq``/``hq`` or one of the usual aliases);
files are matched by their path relative to those folders, without extension, so
``lq/rain/0001.jpg`` and ``hq/rain/0001.png`` form the pair ``rain/0001``.

A pairs file (CSV with a header, or JSONL) lists ``lq`` and ``hq`` paths, relative to the
file's own folder or absolute, and optionally an ``id``.

Problems that belong to one pair (unpaired file, two candidates for one id, a missing
file) do not stop discovery: the pair carries an ``error`` and becomes an error row.
Problems with the input as a whole raise :class:`PairsError`.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ggtqc.images import IMAGE_EXTENSIONS

# (LQ folder, HQ folder) names recognised in a pairs folder, compared without case.
FOLDER_ALIASES: tuple[tuple[str, str], ...] = (
    ("lq", "hq"),
    ("lq", "gt"),
    ("lr", "hr"),
    ("input", "target"),
    ("input", "gt"),
)


class PairsError(Exception):
    """The input as a whole cannot be read; the message says what to do."""


@dataclass(frozen=True)
class Pair:
    id: str
    lq: Path | None
    hq: Path | None
    root: Path
    """Folder that ``lq`` and ``hq`` are reported relative to."""
    error: str | None = None

    def relative(self, path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def discover(source: Path) -> list[Pair]:
    """Pairs from a pairs folder or a pairs file, sorted by id."""
    if source.is_dir():
        return discover_folder(source)
    if source.is_file():
        return read_pairs_file(source)
    raise PairsError(f"{source} does not exist; give a pairs folder (with lq/ and hq/) or a pairs file")


def find_sides(root: Path) -> tuple[Path, Path]:
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    found = [(children[lq], children[hq]) for lq, hq in FOLDER_ALIASES if lq in children and hq in children]
    if not found:
        names = ", ".join(f"{lq}/+{hq}/" for lq, hq in FOLDER_ALIASES)
        raise PairsError(f"{root} has no LQ/HQ folders; expected one of: {names} (or use --pairs-file)")
    if len(found) > 1:
        listed = " and ".join(f"{a.name}/+{b.name}/" for a, b in found)
        raise PairsError(f"{root} is ambiguous: it holds {listed}; use --pairs-file to say which")
    return found[0]


def discover_folder(root: Path) -> list[Pair]:
    lq_dir, hq_dir = find_sides(root)
    lq_files = images_by_id(lq_dir)
    hq_files = images_by_id(hq_dir)
    pairs = []
    for pair_id in sorted(lq_files.keys() | hq_files.keys()):
        lq = lq_files.get(pair_id, [])
        hq = hq_files.get(pair_id, [])
        error = None
        if len(lq) > 1 or len(hq) > 1:
            many = lq if len(lq) > 1 else hq
            side = "lq" if len(lq) > 1 else "hq"
            error = f"{side}: ambiguous, several files for this id ({', '.join(p.name for p in many)})"
        elif not hq:
            error = f"unpaired: no HQ file for this LQ in {hq_dir.name}/"
        elif not lq:
            error = f"unpaired: no LQ file for this HQ in {lq_dir.name}/"
        pairs.append(Pair(pair_id, lq[0] if lq else None, hq[0] if hq else None, root, error))
    return pairs


def images_by_id(side: Path) -> dict[str, list[Path]]:
    by_id: dict[str, list[Path]] = defaultdict(list)
    for folder, dirs, files in os.walk(side):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = PurePosixPath(path.relative_to(side).as_posix())
            by_id[str(rel.with_suffix(""))].append(path)
    return by_id


def read_pairs_file(path: Path) -> list[Pair]:
    base = path.parent
    rows = list(_read_rows(path))
    pairs = []
    seen: dict[str, int] = {}
    for line, row in rows:
        lq_text = str(row.get("lq") or "").strip()
        hq_text = str(row.get("hq") or "").strip()
        if not lq_text or not hq_text:
            raise PairsError(f"{path}:{line}: each row needs 'lq' and 'hq' paths")
        lq, hq = base / lq_text, base / hq_text
        pair_id = str(row.get("id") or "").strip() or PurePosixPath(lq_text).with_suffix("").as_posix()
        if pair_id in seen:
            raise PairsError(f"{path}:{line}: id {pair_id!r} repeats line {seen[pair_id]}; ids must be unique")
        seen[pair_id] = line
        missing = [side for side, p in (("lq", lq), ("hq", hq)) if not p.is_file()]
        error = "; ".join(f"{side}: file not found" for side in missing) or None
        pairs.append(Pair(pair_id, lq, hq, base, error))
    return sorted(pairs, key=lambda p: p.id)


def _read_rows(path: Path):
    suffix = path.suffix.lower()
    try:
        with path.open(newline="", encoding="utf-8") as f:
            if suffix in (".jsonl", ".ndjson"):
                for line, text in enumerate(f, 1):
                    if not text.strip():
                        continue
                    try:
                        row = json.loads(text)
                    except json.JSONDecodeError as e:
                        raise PairsError(f"{path}:{line}: not valid JSON ({e.msg})") from None
                    if not isinstance(row, dict):
                        raise PairsError(f"{path}:{line}: expected a JSON object with 'lq' and 'hq'")
                    yield line, row
            elif suffix in (".csv", ".tsv"):
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
                if not reader.fieldnames or not {"lq", "hq"} <= set(reader.fieldnames):
                    raise PairsError(f"{path}: the header must name 'lq' and 'hq' columns (and optionally 'id')")
                for row in reader:
                    yield reader.line_num, row
            else:
                raise PairsError(f"{path}: a pairs file must end in .csv, .tsv or .jsonl")
    except UnicodeDecodeError:
        raise PairsError(f"{path}: not a UTF-8 text file") from None
