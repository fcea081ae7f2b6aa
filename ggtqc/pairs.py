"""Pair discovery: from a pairs folder or a pairs file to a sorted list of pairs.

A pairs folder holds an LQ and an HQ folder (``lq``/``hq`` or one of the usual aliases);
files are matched by their path relative to those folders, without extension, so
``lq/rain/0001.jpg`` and ``hq/rain/0001.png`` form the pair ``rain/0001``.

Datasets often name the two sides differently. Files that find no partner by name are
matched again with the common conventions taken off their names: a scale suffix on the LQ
side (``0001x4``, ``0001_x4``), and side markers (``_LR``/``_HR``, ``_lq``/``_hq``,
``_low``/``_high``). Templates say it exactly, as BasicSR's ``filename_tmpl`` does:
``Naming(lq="{}x4", hq="{}")``. Each pair records how it was matched (``Pair.matched``),
``ggtqc pairs`` lists the counts, and two files that reduce to one id are an error row that
names both: never a silent guess.

A pairs file (CSV or TSV with a header, JSONL, or Parquet) lists ``lq`` and ``hq`` paths
(or a column alias from :data:`COLUMNS`), relative to the file's own folder or absolute, and
optionally an ``id``. A Parquet file may hold the images themselves (``ggtqc.parquet``). A
folder with ``.parquet`` files directly inside and no LQ/HQ folders is a dataset of Parquet
shards (``ggtqc.parquet.read_parquet_shards``).

Problems that belong to one pair (unpaired file, two candidates for one id, a missing
file) do not stop discovery: the pair carries an ``error`` and becomes an error row.
Problems with the input as a whole raise :class:`PairsError`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ggtqc.images import IMAGE_EXTENSIONS, ImageSource

# (LQ folder, HQ folder) names recognised in a pairs folder, compared without case.
FOLDER_ALIASES: tuple[tuple[str, str], ...] = (
    ("lq", "hq"),
    ("lq", "gt"),
    ("lr", "hr"),
    ("input", "target"),
    ("input", "gt"),
)


# Name endings taken off when files do not pair by their full names, per side.
CONVENTIONS = {
    "lq": re.compile(r"(?i)[_-]?(?:x[2-8]|lrx?[2-8]?|lq|low|input)$"),
    "hq": re.compile(r"(?i)[_-]?(?:hr|hq|gt|high|target)$"),
}


# Column names of a pairs file for each side, the first one present wins: the plain names,
# then the names other tools write (``lq_path``; ``lq_file`` beside an ``lq`` Image column in
# 'ggtqc export --format hf'), then the folder aliases above.
COLUMNS: dict[str, tuple[str, ...]] = {
    "lq": ("lq", "lq_path", "lq_file", "lr", "input"),
    "hq": ("hq", "hq_path", "hq_file", "hr", "gt", "target"),
}


def pick_columns(names) -> dict[str, str] | None:
    """``{"lq": column, "hq": column}`` among ``names``, or None if a side has none."""
    present = set(names)
    found = {side: next((c for c in aliases if c in present), None) for side, aliases in COLUMNS.items()}
    return found if None not in found.values() else None  # type: ignore[return-value]


class PairsError(Exception):
    """The input as a whole cannot be read; the message says what to do."""


@dataclass(frozen=True)
class Naming:
    """How a file's name (without extension) is made from its pair's id, ``{}`` standing for
    the id: ``lq="{}x4"`` reads ``0001x4.png`` as the LQ of pair ``0001``."""

    lq: str = "{}"
    hq: str = "{}"

    def __post_init__(self) -> None:
        for side, template in (("lq", self.lq), ("hq", self.hq)):
            if template.count("{}") != 1:
                raise PairsError(f"--{side}-template {template!r} must hold '{{}}' once, where the pair id goes")

    @property
    def exact(self) -> bool:
        return self.lq == "{}" and self.hq == "{}"

    def pair_id(self, side: str, stem: str) -> str | None:
        """The id a file's relative stem gives under this side's template, or None."""
        template = getattr(self, side)
        head, _, name = stem.rpartition("/")
        prefix, suffix = template.split("{}")
        if not (name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix)):
            return None
        core = name[len(prefix) : len(name) - len(suffix)]
        return f"{head}/{core}" if head else core


@dataclass(frozen=True)
class Pair:
    id: str
    lq: Path | ImageSource | None
    hq: Path | ImageSource | None
    """A file, or an image held elsewhere (a cell of a Parquet pairs file) that reads its bytes."""
    root: Path
    """Folder that ``lq`` and ``hq`` are reported relative to."""
    error: str | None = None
    matched: str = "name"
    """How the two files were matched: ``name`` (the same name), ``template``,
    ``convention: ...`` (which name endings were taken off), or ``row`` (a Parquet file's row)."""

    def relative(self, path: Path | ImageSource | None) -> str | None:
        if path is None:
            return None
        if not isinstance(path, Path):
            return str(path)  # an ImageSource names itself (image_source reads the name back)
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def discover(source: Path, naming: Naming | None = None) -> list[Pair]:
    """Pairs from a pairs folder, a pairs file (sorted by id), or a folder of Parquet shards
    (in shard and row order)."""
    if source.is_dir():
        shards = parquet_shards(source)
        if shards:
            if naming is not None and not naming.exact:
                raise PairsError("--lq-template and --hq-template apply to a folder of images, not to Parquet shards")
            from ggtqc.parquet import read_parquet_shards

            return read_parquet_shards(source, shards)
        return discover_folder(source, naming or Naming())
    if naming is not None and not naming.exact:
        raise PairsError("--lq-template and --hq-template apply to a pairs folder, not a pairs file")
    if source.is_file():
        if source.suffix.lower() == ".parquet":
            from ggtqc.parquet import read_parquet_pairs

            return read_parquet_pairs(source)
        return read_pairs_file(source)
    raise PairsError(f"{source} does not exist; give a pairs folder (with lq/ and hq/) or a pairs file")


def parquet_shards(root: Path) -> list[Path]:
    """The Parquet files of a folder that is a dataset of shards: one with ``.parquet`` files
    directly inside and no LQ/HQ folders (``hf``'s ``data/``, a Hub dataset's ``data/``); else []."""
    if _side_folders(root):
        return []
    from ggtqc.parquet import shards_in

    return shards_in(root)


def _side_folders(root: Path) -> list[tuple[Path, Path]]:
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    return [(children[lq], children[hq]) for lq, hq in FOLDER_ALIASES if lq in children and hq in children]


def find_sides(root: Path) -> tuple[Path, Path]:
    found = _side_folders(root)
    if not found:
        names = ", ".join(f"{lq}/+{hq}/" for lq, hq in FOLDER_ALIASES)
        raise PairsError(f"{root} has no LQ/HQ folders; expected one of: {names}, or .parquet shards (or use --pairs-file)")
    if len(found) > 1:
        listed = " and ".join(f"{a.name}/+{b.name}/" for a, b in found)
        raise PairsError(f"{root} is ambiguous: it holds {listed}; use --pairs-file to say which")
    return found[0]


def discover_folder(root: Path, naming: Naming) -> list[Pair]:
    lq_dir, hq_dir = find_sides(root)
    sides = {"lq": images_by_id(lq_dir), "hq": images_by_id(hq_dir)}
    if naming.exact:
        return _match(root, sides, "name", lq_dir, hq_dir, leftovers=True)
    by_template = {side: _rekey(files, lambda stem, side=side: naming.pair_id(side, stem)) for side, files in sides.items()}
    pairs = _match(root, by_template, "template", lq_dir, hq_dir, leftovers=False)
    for side, files in sides.items():
        for stem, paths in files.items():
            if naming.pair_id(side, stem) is None:
                template = getattr(naming, side)
                error = f"{side}: name does not fit --{side}-template {template!r}"
                files_ = (paths[0], None) if side == "lq" else (None, paths[0])
                pairs.append(Pair(f"unmatched-{side}/{stem}", *files_, root, error, "template"))  # ids stay unique
    return sorted(pairs, key=lambda p: p.id)


def _rekey(files: dict[str, list[Path]], key) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = defaultdict(list)
    for stem, paths in files.items():
        new = key(stem)
        if new is not None:
            out[new] += paths
    return out


def _match(root: Path, sides: dict[str, dict[str, list[Path]]], how: str, lq_dir: Path, hq_dir: Path, leftovers: bool) -> list[Pair]:
    """Pairs of files that share a key; with ``leftovers``, the unpaired files get a second
    chance under the naming conventions before they become error rows."""
    lq_files, hq_files = sides["lq"], sides["hq"]
    lonely = {"lq": {k: v for k, v in lq_files.items() if k not in hq_files}, "hq": {k: v for k, v in hq_files.items() if k not in lq_files}}
    pairs = [_pair(root, pair_id, lq_files[pair_id], hq_files[pair_id], how) for pair_id in lq_files.keys() & hq_files.keys()]
    if leftovers and lonely["lq"] and lonely["hq"]:
        reduced = {side: _rekey(files, lambda stem, side=side: _strip(side, stem)) for side, files in lonely.items()}
        for pair_id in reduced["lq"].keys() & reduced["hq"].keys():
            lq, hq = reduced["lq"][pair_id], reduced["hq"][pair_id]
            endings = sorted({_ending(side, p, sides[side]) for side, paths in (("lq", lq), ("hq", hq)) for p in paths} - {""})
            pairs.append(_pair(root, pair_id, lq, hq, f"convention: {' '.join(endings)}"))
            for side, paths in (("lq", lq), ("hq", hq)):
                for path in paths:
                    lonely[side].pop(_stem_of(path, sides[side]), None)
    for pair_id, paths in lonely["lq"].items():
        pairs.append(_pair(root, pair_id, paths, [], how, f"unpaired: no HQ file for this LQ in {hq_dir.name}/"))
    for pair_id, paths in lonely["hq"].items():
        pairs.append(_pair(root, pair_id, [], paths, how, f"unpaired: no LQ file for this HQ in {lq_dir.name}/"))
    return sorted(pairs, key=lambda p: p.id)


def _pair(root: Path, pair_id: str, lq: list[Path], hq: list[Path], how: str, error: str | None = None) -> Pair:
    if len(lq) > 1 or len(hq) > 1:
        side, many = ("lq", lq) if len(lq) > 1 else ("hq", hq)
        error = f"{side}: ambiguous, several files for this id ({', '.join(p.name for p in many)})"
    return Pair(pair_id, lq[0] if lq else None, hq[0] if hq else None, root, error, how)


def _strip(side: str, stem: str) -> str:
    head, _, name = stem.rpartition("/")
    core = CONVENTIONS[side].sub("", name) or name
    return f"{head}/{core}" if head else core


def _stem_of(path: Path, files: dict[str, list[Path]]) -> str:
    return next(stem for stem, paths in files.items() if path in paths)


def _ending(side: str, path: Path, files: dict[str, list[Path]]) -> str:
    name = _stem_of(path, files).rpartition("/")[2]
    return name[len(CONVENTIONS[side].sub("", name) or name) :]


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
    pairs = []
    seen: dict[str, int] = {}
    for line, row in _read_rows(path):
        columns = pick_columns(row) or {"lq": "lq", "hq": "hq"}
        lq_text = str(row.get(columns["lq"]) or "").strip()
        hq_text = str(row.get(columns["hq"]) or "").strip()
        if not lq_text or not hq_text:
            raise PairsError(f"{path}:{line}: each row needs 'lq' and 'hq' paths")
        lq, hq = base / lq_text, base / hq_text
        pair_id = str(row.get("id") or "").strip() or path_id(lq_text)
        if pair_id in seen:
            raise PairsError(f"{path}:{line}: id {pair_id!r} repeats line {seen[pair_id]}; ids must be unique")
        seen[pair_id] = line
        missing = [side for side, p in (("lq", lq), ("hq", hq)) if not p.is_file()]
        error = "; ".join(f"{side}: file not found" for side in missing) or None
        pairs.append(Pair(pair_id, lq, hq, base, error))
    return sorted(pairs, key=lambda p: p.id)


def path_id(text: str) -> str:
    """The id a pairs file gives a row without one: its LQ path without extension."""
    return PurePosixPath(text).with_suffix("").as_posix()


def image_source(source: Path, text: str) -> Path | ImageSource:
    """What a results row's ``lq`` or ``hq`` names, in a run whose input was ``source``: a
    file (relative to a pairs folder, or to a pairs file's folder), or a Parquet cell
    (``pairs.parquet#12/lq``; in a folder of shards, the shard's name in that folder)."""
    if source.suffix.lower() == ".parquet" or (source.is_dir() and ".parquet#" in text):
        from ggtqc.parquet import parse_cell

        cell = parse_cell(source, text)
        if cell is not None:
            return cell
    root = source if source.is_dir() else source.parent
    return root / text


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
                if not reader.fieldnames or pick_columns(reader.fieldnames) is None:
                    raise PairsError(f"{path}: the header must name 'lq' and 'hq' columns (and optionally 'id')")
                for row in reader:
                    yield reader.line_num, row
            else:
                raise PairsError(f"{path}: a pairs file must end in .csv, .tsv, .jsonl or .parquet")
    except UnicodeDecodeError:
        raise PairsError(f"{path}: not a UTF-8 text file") from None
