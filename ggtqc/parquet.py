"""Parquet pairs files: path columns, or the images themselves as ``datasets`` writes them.

One row per pair. The LQ and HQ columns are found by the names a CSV pairs file uses
(``lq``/``hq`` or an alias, ``ggtqc.pairs.COLUMNS``). Each holds either

- paths (strings), relative to the Parquet file's folder or absolute, read as files, as a
  CSV pairs file's are; or
- images: the ``datasets`` library's ``Image`` feature, a struct of ``bytes`` and ``path``
  (what ``ggtqc export --format hf`` and ``Dataset.to_parquet`` write), or plain binary.
  The bytes are decoded in memory by the same decoder as files, never written to disk; a
  struct with no bytes but a path reads that file, as ``datasets`` does.

Finding the pairs reads the id and path columns only (of a struct, its ``path`` field),
never the images. An image side of a pair is a :class:`Cell` (file, row, column) that the
runner's decoder reads when it loads the pair: a process streams the file's image columns
in slices of about :data:`SLICE_BYTES` and keeps the last :data:`KEEP` slices, so memory
holds a few slices, whatever the size of the file or of its row groups. Pairs keep the
file's order (a pairs file in text is sorted by id), so a run reads each slice once.

Ids, the same on every run over the same file (so a run resumes): the ``id`` column; else
the LQ path without extension (a path column's, or the structs' ``path`` field when every
row has one and no two are alike); else the row number and that path, ``000012-0001``, or
the row number alone.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ggtqc.images import DecodeError, DecodeLimits, read_file
from ggtqc.pairs import COLUMNS, Pair, PairsError, path_id, pick_columns

SLICE_BYTES = 16 * 2**20
"""Rows read from the file at once hold about this many bytes (by the row group's statistics)."""
KEEP = 3
"""Slices kept in memory per process, so pairs decoded a little out of order are not read twice."""
BUFFER = 2**20
"""Read buffer: a column chunk is streamed through it, never read whole."""


def require():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise PairsError("a Parquet pairs file needs pyarrow: pip install -e '.[hf]'") from None
    return pq


@dataclass(frozen=True)
class Cell:
    """One image in a Parquet pairs file: row ``row`` (from 0, in the whole file) of ``column``."""

    file: Path
    row: int
    column: str

    def __str__(self) -> str:
        return f"{self.file.name}#{self.row}/{self.column}"

    def read(self, limits: DecodeLimits) -> bytes:
        value = _reader(self.file).get(self.row, self.column)
        data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (value, None)
        if data is None:
            if path:  # the datasets convention: no bytes, the image is the file at path
                return read_file(self.file.parent / path, limits)
            raise DecodeError(f"no image in row {self.row} of column {self.column!r} (no bytes, no path)")
        if len(data) == 0:
            raise DecodeError("empty image (0 bytes)")
        if len(data) > limits.max_bytes:
            raise DecodeError(f"image too large ({len(data)} bytes > cap {limits.max_bytes})")
        return data


def parse_cell(source: Path, text: str) -> Cell | None:
    """The cell a results row names (``pairs.parquet#12/lq``) in a run of ``source`` (a
    Parquet file, or a folder of shards: ``train-00001.parquet#12/lq``), or None."""
    if source.is_dir():
        match = re.fullmatch(r"([^/\\#]+\.parquet)#(\d+)/(\w+)", text)
        return Cell(source / match[1], int(match[2]), match[3]) if match and (source / match[1]).is_file() else None
    match = re.fullmatch(rf"{re.escape(source.name)}#(\d+)/(\w+)", text)
    return Cell(source, int(match[1]), match[2]) if match else None


def shards_in(folder: Path) -> list[Path]:
    """The Parquet files directly in ``folder`` (not hidden), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".parquet" and not p.name.startswith(".") and p.is_file())


def read_parquet_shards(folder: Path, shards: list[Path]) -> list[Pair]:
    """The pairs of a folder of Parquet shards, shard by shard in name order, each in its file's order.

    Ids from a shard's ``id`` column are kept; any other id (from paths or the row number) is
    prefixed with the shard's stem (``train-00001/0003``), so the same folder gives the same ids on every run.
    An id found in two shards is one error row naming both, never one pair over another."""
    pairs: list[Pair] = []
    where: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    for shard in shards:
        found, given = _read(shard.resolve())
        for row, pair in enumerate(found):  # one pair per row, in the file's order
            pair_id = pair.id if given[row] else f"{shard.stem}/{pair.id}"
            place = f"{shard.name} row {row}"
            if pair_id in first:
                where[pair_id].append(place)
                continue
            where[pair_id] = [place]
            first[pair_id] = len(pairs)
            pairs.append(replace(pair, id=pair_id, root=folder))
    for pair_id, places in where.items():
        if len(places) > 1:
            k = first[pair_id]
            pairs[k] = replace(pairs[k], error=f"id in several shards ({', '.join(places)}); ids must be unique across shards")
    return pairs


def read_parquet_pairs(path: Path) -> list[Pair]:
    """The pairs of a Parquet pairs file, in the file's order."""
    return _read(path)[0]


def _read(path: Path) -> tuple[list[Pair], list[bool]]:
    """The pairs of one Parquet file, and for each whether its id is the ``id`` column's."""
    pq = require()
    path = path.resolve()
    parquet = _open(pq, path)
    schema = parquet.schema_arrow
    columns = pick_columns(schema.names)
    if columns is None:
        names = ", ".join(schema.names)
        raise PairsError(
            f"{path}: found no LQ and HQ columns among {names}; name them {' or '.join(COLUMNS['lq'][:2])} "
            f"and {' or '.join(COLUMNS['hq'][:2])} (paths, or images as the datasets library writes them)"
        )
    kinds = {side: _kind(path, schema.field(name)) for side, name in columns.items()}
    wanted = ["id"] if "id" in schema.names else []
    for side, name in columns.items():
        if kinds[side] == "paths":
            wanted.append(name)
        elif kinds[side] == "struct" and _has_path(schema.field(name)):
            wanted.append(f"{name}.path")
    rows = []
    if wanted:
        import pyarrow as pa

        try:
            for batch in parquet.iter_batches(batch_size=65536, columns=wanted):
                rows += batch.to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise PairsError(f"{path}: cannot read its {', '.join(wanted)} columns ({str(e).strip().splitlines()[0][:160]})") from None
    else:
        rows = [{}] * parquet.metadata.num_rows
    given = [row.get("id") is not None and bool(str(row["id"]).strip()) for row in rows]
    return _pairs(path, rows, columns, kinds), given


def _open(pq, path: Path):
    import pyarrow as pa

    try:
        return pq.ParquetFile(path, buffer_size=BUFFER, pre_buffer=False)
    except (pa.ArrowException, OSError) as e:
        raise PairsError(f"{path}: not a readable Parquet file ({str(e).strip().splitlines()[0][:160]})") from None


def _kind(path: Path, field) -> str:
    """``paths``, ``struct`` (the datasets Image feature) or ``binary``; else the file is refused."""
    import pyarrow as pa

    kind = field.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "paths"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    if pa.types.is_struct(kind):
        names = {kind.field(i).name: kind.field(i).type for i in range(kind.num_fields)}
        if "bytes" in names and (pa.types.is_binary(names["bytes"]) or pa.types.is_large_binary(names["bytes"])):
            return "struct"
    raise PairsError(
        f"{path}: column {field.name!r} is {kind}; expected paths (strings) or images "
        "(a struct of bytes and path, as the datasets library's Image feature, or binary)"
    )


def _has_path(field) -> bool:
    return any(field.type.field(i).name == "path" for i in range(field.type.num_fields))


def _pairs(path: Path, rows: list[dict[str, Any]], columns: dict[str, str], kinds: dict[str, str]) -> list[Pair]:
    base = path.parent
    names = {side: _names(rows, columns[side], kinds[side]) for side in ("lq", "hq")}
    for side, kind in kinds.items():
        if kind == "paths":
            empty = next((k for k, name in enumerate(names[side]) if not name), None)
            if empty is not None:
                raise PairsError(f"{path}: row {empty}: each row needs 'lq' and 'hq' paths")
    lq_names = names["lq"]
    # paths name a pair as in a CSV pairs file (two alike are an error); images' path fields only where they can
    by_path = kinds["lq"] == "paths" or (all(lq_names) and len(set(map(path_id, lq_names))) == len(lq_names))
    width = max(6, len(str(len(rows))))
    pairs = []
    seen: dict[str, int] = {}
    for k, row in enumerate(rows):
        given = row.get("id")
        if given is not None and str(given).strip():
            pair_id = str(given).strip()
        elif by_path:
            pair_id = path_id(lq_names[k])
        else:
            pair_id = f"{k:0{width}d}" + (f"-{path_id(lq_names[k])}" if lq_names[k] else "")
        if pair_id in seen:
            raise PairsError(f"{path}: row {k}: id {pair_id!r} repeats row {seen[pair_id]}; ids must be unique")
        seen[pair_id] = k
        sides: dict[str, Path | Cell] = {}
        missing = []
        for side in ("lq", "hq"):
            if kinds[side] == "paths":
                sides[side] = base / names[side][k]
                if not sides[side].is_file():
                    missing.append(f"{side}: file not found")
            else:
                sides[side] = Cell(path, k, columns[side])
        pairs.append(Pair(pair_id, sides["lq"], sides["hq"], base, "; ".join(missing) or None, matched="row"))
    return pairs


def _names(rows: list[dict[str, Any]], column: str, kind: str) -> list[str]:
    """Each row's path for a side: the path column's text, the struct's path field, or ''."""
    out = []
    for row in rows:
        value = row.get(column)
        if isinstance(value, dict):
            value = value.get("path")
        out.append(str(value).strip() if kind != "binary" and value is not None else "")
    return out


class _Reader:
    """One Parquet file's image columns, streamed in slices of rows, the last few kept."""

    def __init__(self, file: Path) -> None:
        pq = require()
        self.file = file
        self.parquet = _open(pq, file)
        meta = self.parquet.metadata
        schema = self.parquet.schema_arrow
        self.columns = [name for name in schema.names if _is_image(schema.field(name))]
        self.starts = [0]
        self.slice_rows = []
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            self.starts.append(self.starts[-1] + group.num_rows)
            per_row = group.total_byte_size / max(1, group.num_rows)
            self.slice_rows.append(max(1, min(group.num_rows, int(SLICE_BYTES // max(1.0, per_row)))))
        self.kept: OrderedDict[tuple[int, int], Any] = OrderedDict()  # (group, first row) -> RecordBatch
        self.stream: tuple[int, int, Any] | None = None  # (group, next row, batch iterator)
        self.lock = threading.Lock()
        self.slices_read = 0

    def get(self, row: int, column: str) -> Any:
        if column not in self.columns:
            raise DecodeError(f"column {column!r} of {self.file.name} holds no images")
        if not 0 <= row < self.starts[-1]:
            raise DecodeError(f"row {row} is past the end of the file ({self.starts[-1]} rows)")
        group = bisect.bisect_right(self.starts, row) - 1
        offset = row - self.starts[group]
        import pyarrow as pa

        with self.lock:
            try:
                batch, first = self._slice(group, offset)
            except (pa.ArrowException, OSError) as e:
                self.stream = None
                raise DecodeError(f"cannot read row {row} of {self.file.name} ({str(e).strip().splitlines()[0][:160]})") from None
            return batch.column(column)[offset - first].as_py()

    def _slice(self, group: int, offset: int):
        for (g, first), batch in self.kept.items():
            if g == group and first <= offset < first + batch.num_rows:
                self.kept.move_to_end((g, first))
                return batch, first
        if self.stream is None or self.stream[0] != group or self.stream[1] > offset:
            iterator = self.parquet.iter_batches(batch_size=self.slice_rows[group], row_groups=[group], columns=self.columns, use_threads=False)
            self.stream = (group, 0, iterator)
        while True:
            g, first, iterator = self.stream
            try:
                batch = next(iterator)
            except StopIteration:
                self.stream = None
                raise DecodeError(f"row group {group} ended before row {offset}") from None
            self.slices_read += 1
            self.stream = (g, first + batch.num_rows, iterator)
            self.kept[(g, first)] = batch
            while len(self.kept) > KEEP:
                self.kept.popitem(last=False)
            if first <= offset < first + batch.num_rows:
                return batch, first


def _is_image(field) -> bool:
    try:
        return _kind(Path(), field) in ("struct", "binary")
    except PairsError:
        return False


OPEN = 2
"""Files a process keeps open with their slices (a folder of shards is read shard by shard)."""
_readers: OrderedDict[tuple[Path, int, int], _Reader] = OrderedDict()
_readers_lock = threading.Lock()


def _reader(file: Path) -> _Reader:
    """This process's reader of ``file``; a file rewritten since is opened again."""
    try:
        stat = file.stat()
    except OSError as e:
        raise DecodeError(f"cannot read {file.name} ({e.strerror})") from None
    key = (file, stat.st_mtime_ns, stat.st_size)
    with _readers_lock:
        reader = _readers.get(key)
        if reader is None:
            for old in [k for k in _readers if k[0] == file]:
                del _readers[old]
            try:
                reader = _readers[key] = _Reader(file)
            except PairsError as e:
                raise DecodeError(str(e).removeprefix(f"{file}: ")) from None
            while len(_readers) > OPEN:
                _readers.popitem(last=False)  # the least recently read file
        _readers.move_to_end(key)
        return reader


def close_readers() -> None:
    """Forget the open files and the slices kept (a run calls this when it ends)."""
    with _readers_lock:
        _readers.clear()
