"""``--export DIR``: accepted pairs as a clean ``DIR/lq``, ``DIR/hq`` dataset.

Files are hard-linked (no copy, inputs untouched), or symlinked where a hard link is
impossible (another file system). Names keep the pair id and each file's extension. DIR
is rebuilt on each export, so pairs no longer accepted disappear from it; a non-empty DIR
that an export did not make is refused rather than touched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MARKER = ".ggtqc-export"


class ExportError(Exception):
    """The export folder cannot be used; the message says what to do."""


def check_export_dir(dest: Path) -> None:
    """Refuse, before a run, a folder the export could not rebuild."""
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"--export {dest} is a file; choose a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).exists():
        raise ExportError(f"--export {dest} is not empty and was not made by ggtqc; choose a new folder")


def export_accepted(rows: Iterable[dict[str, Any]], root: Path, dest: Path) -> int:
    """Link the accepted pairs of ``rows`` into ``dest``; return how many."""
    check_export_dir(dest)
    if dest.exists() and any(dest.iterdir()):
        for side in ("lq", "hq"):
            shutil.rmtree(dest / side, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).write_text("made by 'ggtqc filter --export'; rebuilt on each export\n")
    count = 0
    for row in rows:
        if row["verdict"] != "accept":
            continue
        for side in ("lq", "hq"):
            source = (root / row[side]).resolve()
            target = dest / side / (row["id"] + source.suffix.lower())
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                target.symlink_to(source)
        count += 1
    return count
