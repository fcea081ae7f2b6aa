"""Progress on stderr: a live line on a terminal, a line every few seconds in a log."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO


class Progress:
    """A progress callback for :func:`ggtqc.filter_pairs`: ``progress(rows, done, total)``.

    ``spent``, which ``filter_pairs`` sets before each call, is the filters' running cost
    (``judge $0.0123 (12 requests)``), shown at the end of the line."""

    spent: str = ""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 5.0) -> None:
        self.total = 0
        self.done_before: int | None = None
        self.stream = stream
        self.live = stream.isatty()
        self.every = 0.1 if self.live else every
        self.counts: Counter[str] = Counter()
        self.started = self.last_shown = time.perf_counter()

    def __call__(self, rows: list[dict[str, Any]], done: int, total: int) -> None:
        if self.done_before is None:  # the first call, before any work
            self.done_before = done - len(rows)
            self.started = self.last_shown = time.perf_counter()
        self.total = total
        self.update(rows)

    def update(self, rows: list[dict[str, Any]]) -> None:
        self.counts.update(row["verdict"] for row in rows)
        now = time.perf_counter()
        if now - self.last_shown >= self.every:
            self.last_shown = now
            self._show(now)

    def close(self) -> None:
        if self.done_before is None:  # the run never started: nothing to show
            return
        self._show(time.perf_counter())
        if self.live:
            self.stream.write("\n")
        self.stream.flush()

    def _show(self, now: float) -> None:
        scored = sum(self.counts.values())
        rate = scored / max(now - self.started, 1e-9)
        line = (
            f"{(self.done_before or 0) + scored}/{self.total} pairs  {rate:.1f} pairs/s  "
            f"accept {self.counts['accept']}  review {self.counts['review']}  reject {self.counts['reject']}  error {self.counts['error']}"
        )
        if self.spent:
            line += f"  {self.spent}"
        self.stream.write(f"\r{line}\x1b[K" if self.live else line + "\n")
        self.stream.flush()
