"""A crash-safe JSON-lines log: rows are appended and on disk before ``append`` returns.

Reopening a log cuts off a half-written last line (a process killed inside a write), keeps
a complete last row whose newline was lost, and refuses damage anywhere else rather than
silently skipping rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class LogError(Exception):
    """A log that cannot be read back; the message says where and what to do."""


class RowLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._repair()

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        tail = data[data.rfind(b"\n") + 1 :]  # b"" unless the last write was cut
        if not tail:
            return
        with self.path.open("r+b") as f:
            try:
                json.loads(tail)
                f.seek(len(data))
                f.write(b"\n")  # a complete row that only lost its newline
            except ValueError:
                f.truncate(len(data) - len(tail))
            f.flush()
            os.fsync(f.fileno())

    def rows(self) -> Iterator[dict[str, Any]]:
        return read_rows(self.path)

    def last(self) -> dict[str, dict[str, Any]]:
        """The last row written for each id (a log where a later row supersedes earlier ones)."""
        return {row["id"]: row for row in self.rows()}

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` and make them durable before returning."""
        if not rows:
            return
        text = "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a log, without changing it. A last line with no newline, one a running
    process may still be writing, is left out (an opened :class:`RowLog` has none)."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or not line.endswith("\n"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict) or "id" not in row:
                raise LogError(f"{path} line {number} is not a row; fix or remove it, or start afresh")
            yield row


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file."""
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
