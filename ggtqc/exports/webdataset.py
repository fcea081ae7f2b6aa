"""The ``webdataset`` format: POSIX tar shards ``DEST/shards/pairs-00000.tar``, ...

Each pair is three members in a row: ``{key}.lq.<ext>``, ``{key}.hq.<ext>`` and
``{key}.json`` (the QC row and generation row, ``ggtqc.exports.shards.record``). The key
has no dots (WebDataset splits a member name at its first dot) and no slashes. ``<ext>``
is ``png``, ``jpg`` or ``webp``: the file's own bytes (or those of an image held in a
Parquet pairs file, by their content), or a lossless PNG for other formats.
Written with the standard library's ``tarfile``; reading needs the ``webdataset`` package
(``pip install 'ggtqc[webdataset]'``).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from ggtqc.export import Item
from ggtqc.exports.files import stat_of
from ggtqc.exports.shards import image_of, record


class TarShards:
    folder = "shards"
    pattern = "pairs-{index:05d}.tar"

    def write(self, path: Path, items: list[Item]) -> None:
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for item in items:
                for side in ("lq", "hq"):
                    source = getattr(item, side)
                    extension, converted = image_of(source)
                    info = _info(f"{item.key}.{side}{extension}", stat_of(source).st_mtime)
                    if converted is None:
                        info.size = source.stat().st_size
                        with source.open("rb") as f:
                            tar.addfile(info, f)
                    else:
                        info.size = len(converted)
                        tar.addfile(info, io.BytesIO(converted))
                data = json.dumps(record(item), ensure_ascii=False, allow_nan=False, indent=1).encode()
                info = _info(f"{item.key}.json", stat_of(item.hq).st_mtime)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _info(name: str, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = int(mtime)
    info.mode = 0o644
    info.uname = info.gname = ""
    return info
