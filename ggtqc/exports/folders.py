"""The ``folders`` and ``basicsr`` formats: ``DEST/lq`` and ``DEST/hq`` of linked files.

Each file is hard-linked from the pairs folder (no copy; the inputs are untouched), or
copied where a link is impossible (another file system). A file reaches its final name
only whole: it is linked or written under a temporary name and renamed. A rerun keeps
files already in place (the same inode, or a copy of the same size and time), writes the
rest and removes files of pairs no longer exported.

``folders`` names files by pair id (``hq/haze/coffee.jpg``), or with ``rename`` by the
flat safe key (``hq/haze__coffee.jpg``), the same base name on both sides, as BasicSR's
folder mode pairs them.

An image held in a Parquet pairs file (a cell, ``ggtqc.exports.files``) has no file to
link: its bytes are written, with the extension its content says (PNG, JPEG, WebP, BMP,
TIFF), never re-encoded where a linked file would not be; a rerun keeps a file that holds
the same bytes. The summary counts such files as ``written``.

``basicsr`` writes what BasicSR's ``PairedImageDataset`` reads with ``meta_info_file``:
``paired_paths_from_meta_info_file`` takes the first space-separated word of each line as
the GT file under ``dataroot_gt`` and finds the LQ file under ``dataroot_lq`` by the GT's
base name and extension (``filename_tmpl`` ``'{}'``). So files are flat, named by key, and
both sides of a pair share one extension: where the LQ and HQ formats differ, both are
written as lossless PNG (a PNG side is still linked). Each line of ``meta_info.txt`` is
``<key><ext> (<h>,<w>,<c>)``, the GT's shape as BasicSR's own ``generate_meta_info.py``
writes it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ggtqc.export import Item
from ggtqc.exports.files import (
    Picture,
    UnreadableImage,
    png_bytes,
    read_bytes,
    shape,
    sniff,
    stat_of,
)
from ggtqc.rowlog import write_atomic

SIDES = ("lq", "hq")
META_INFO = "meta_info.txt"


def export_folders(items: Iterable[Item], dest: Path, basicsr: bool, rename: bool) -> dict[str, Any]:
    counts = {"linked": 0, "kept": 0, "copied": 0, "written": 0, "converted": 0}
    expected: set[str] = set()
    meta = None
    if basicsr:
        meta_tmp = dest / f".{META_INFO}.part"
        meta = meta_tmp.open("w", encoding="utf-8")
    try:
        for item in items:
            held = {side: read_bytes(p) for side in SIDES if not isinstance(p := getattr(item, side), Path)}
            targets = _targets(item, held, basicsr, rename)
            for side in SIDES:
                source = getattr(item, side)
                relative, convert = targets[side]
                expected.add(relative)
                if side in held:
                    counts[_write(source, held[side], dest / relative, convert)] += 1
                else:
                    counts[_place(source, dest / relative, convert)] += 1
            if meta is not None:
                h, w, c = shape(dest / targets["hq"][0])
                meta.write(f"{Path(targets['hq'][0]).name} ({h},{w},{c})\n")
    finally:
        if meta is not None:
            meta.close()
    if meta is not None:
        os.replace(meta_tmp, dest / META_INFO)
    removed = _remove_others(dest, expected)
    return {"files": {**counts, "removed": removed}}


def _targets(item: Item, held: dict[str, bytes], basicsr: bool, rename: bool) -> dict[str, tuple[str, bool]]:
    """Each side's path under DEST and whether its file is re-encoded as PNG; ``held``: the
    bytes of the sides that are not files."""
    extensions = {side: _extension(getattr(item, side), held.get(side)) for side in SIDES}
    if not basicsr:
        pair_id = item.row["id"]
        inside = not Path(pair_id).is_absolute() and ".." not in Path(pair_id).parts
        name = pair_id if inside and not rename else item.key
        return {side: (f"{side}/{name}{extensions[side]}", False) for side in SIDES}
    if extensions["lq"] == extensions["hq"]:
        return {side: (f"{side}/{item.key}{extensions[side]}", False) for side in SIDES}
    return {side: (f"{side}/{item.key}.png", extensions[side] != ".png") for side in SIDES}


def _extension(source: Picture, data: bytes | None) -> str:
    if data is None:
        return _normal(source.suffix)  # type: ignore[union-attr]
    extension = sniff(data[:12])
    if extension is None:
        raise UnreadableImage(f"{source}: not a PNG, JPEG, WebP, BMP or TIFF image")
    return extension


def _normal(suffix: str) -> str:
    suffix = suffix.lower()
    return {".jpeg": ".jpg", ".tiff": ".tif"}.get(suffix, suffix)


def _place(source: Path, target: Path, convert: bool) -> str:
    """Link, copy or convert ``source`` to ``target`` unless it is already there."""
    source_stat = source.stat()
    if target.is_file():
        target_stat = target.stat()
        if convert:
            if target_stat.st_mtime_ns == source_stat.st_mtime_ns:
                return "kept"
        elif os.path.samestat(source_stat, target_stat) or (
            target_stat.st_size == source_stat.st_size and target_stat.st_mtime_ns == source_stat.st_mtime_ns
        ):
            return "kept"
    target.parent.mkdir(parents=True, exist_ok=True)
    if convert:
        write_atomic(target, png_bytes(source))
        os.utime(target, ns=(source_stat.st_atime_ns, source_stat.st_mtime_ns))  # how a rerun knows it is current
        return "converted"
    tmp = target.with_name(f".{target.name}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
        how = "linked"
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, tmp)
        how = "copied"
    os.replace(tmp, target)
    return how


def _write(source: Picture, data: bytes, target: Path, convert: bool) -> str:
    """Write an image held in a Parquet file (its bytes, or a PNG of them) unless it is already there."""
    made = stat_of(source).st_mtime_ns  # the Parquet file's
    if target.is_file():
        if convert:
            if target.stat().st_mtime_ns == made:
                return "kept"
        elif target.stat().st_size == len(data) and target.read_bytes() == data:
            return "kept"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, png_bytes(data) if convert else data)
    if convert:
        os.utime(target, ns=(made, made))  # how a rerun knows it is current
        return "converted"
    return "written"


def _remove_others(dest: Path, expected: set[str]) -> int:
    """Remove files under DEST/lq and DEST/hq that this export did not place, and empty folders."""
    removed = 0
    for side in SIDES:
        top = dest / side
        if not top.is_dir():
            continue
        for folder, subfolders, files in os.walk(top, topdown=False):
            for name in files:
                path = Path(folder) / name
                if path.relative_to(dest).as_posix() not in expected:
                    path.unlink()
                    removed += 1
            if folder != str(top) and not os.listdir(folder):
                os.rmdir(folder)
    return removed
