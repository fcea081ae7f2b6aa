"""Sharded exports (``hf``, ``webdataset``): a fixed number of pairs per shard, resumable.

Pairs are cut into shards of ``shard_size`` in results order, and only one shard's rows
are held at a time (its images are streamed into the file one pair at a time). A shard is
written under a temporary name and renamed when whole; then a marker,
``DEST/.ggtqc-done/<shard>.json``, records a digest of everything the shard holds: the
export's settings, and per pair its results row, key, generation row and both files' size
and modification time. A rerun skips a shard whose file and matching marker are there,
rewrites any other (a killed run's partial shard, a shard whose pairs were re-decided or
whose files changed), and removes shards past the new last one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from ggtqc.export import Item
from ggtqc.exports.files import Picture, kept_extension, png_bytes, read_bytes
from ggtqc.rowlog import write_atomic

DONE = ".ggtqc-done"


class ShardWriter(Protocol):
    folder: str  # under DEST
    pattern: str  # shard file names, with {index}

    def write(self, path: Path, items: list[Item]) -> None:
        """Write ``items`` to ``path`` (a temporary name), streaming their images."""


def write_shards(items: Iterable[Item], dest: Path, writer: ShardWriter, shard_size: int, settings: dict[str, Any]) -> dict[str, Any]:
    folder = dest / writer.folder
    done = dest / DONE
    folder.mkdir(parents=True, exist_ok=True)
    done.mkdir(exist_ok=True)
    for stale in folder.glob(".*.part"):
        stale.unlink()  # a killed run's unfinished shard
    written = kept = count = size = 0
    names: list[str] = []
    iterator = iter(items)
    for index in itertools.count():
        chunk = list(itertools.islice(iterator, shard_size))
        if not chunk:
            break
        name = writer.pattern.format(index=index)
        names.append(name)
        path, marker = folder / name, done / f"{name}.json"
        digest = _digest(settings, chunk)
        count += len(chunk)
        if path.is_file() and _marked(marker) == digest:
            kept += 1
            size += path.stat().st_size
            continue
        marker.unlink(missing_ok=True)
        tmp = folder / f".{name}.part"
        writer.write(tmp, chunk)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        size += path.stat().st_size
        write_atomic(marker, (json.dumps({"digest": digest, "pairs": len(chunk)}) + "\n").encode())
        written += 1
    removed = _remove_past(folder, done, writer.pattern, len(names))
    return {
        "shards": {"written": written, "kept": kept, "removed": removed, "total": len(names)},
        "shard_files": [f"{writer.folder}/{n}" for n in names],
        "bytes": size,
    }


def _digest(settings: dict[str, Any], chunk: list[Item]) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for item in chunk:
        h.update(json.dumps(item.stamp(), sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def _marked(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text(encoding="utf-8"))["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_past(folder: Path, done: Path, pattern: str, count: int) -> int:
    """Remove this format's shards numbered ``count`` and above, with their markers."""
    prefix, _, suffix = pattern.partition("{index")
    suffix = suffix.split("}", 1)[1]
    shape = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    removed = 0
    for path in folder.iterdir():
        match = shape.match(path.name)
        if match and int(match.group(1)) >= count:
            path.unlink()
            (done / f"{path.name}.json").unlink(missing_ok=True)
            removed += 1
    return removed


def image_of(picture: Picture) -> tuple[str, bytes | None]:
    """An image's extension in a shard and the bytes that go in: None for a file kept as it
    is (streamed from it), else its PNG, or the bytes of an image held in a Parquet file
    (as they are where its format is kept, else re-encoded as for a file)."""
    if isinstance(picture, Path):
        extension = kept_extension(picture)
        return (extension, None) if extension else (".png", png_bytes(picture))
    data = read_bytes(picture)
    extension = kept_extension(data)
    return (extension, data) if extension else (".png", png_bytes(data))


def record(item: Item) -> dict[str, Any]:
    """What a shard says about a pair besides its images: the QC row and the generation row."""
    row = item.row
    return {
        "id": row["id"],
        "key": item.key,
        "verdict": row["verdict"],
        "reasons": row.get("reasons", []),
        "failed": row.get("failed", []),
        "review": row.get("review", []),
        "scores": row.get("scores", {}),
        "lq_file": row["lq"],
        "hq_file": row["hq"],
        "generation": item.generation,
    }
