"""Progress on stderr: a live line on a terminal, a line every few seconds in a log."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    def __init__(
        self, total: int, done_before: int, stream: TextIO = sys.stderr, every: float = 5.0, extra: Callable[[], str] = lambda: ""
    ) -> None:
        self.extra = extra
        """Text appended to each line (the filters' running cost)."""
        self.total = total
        self.done_before = done_before
        self.stream = stream
        self.live = stream.isatty()
        self.every = 0.1 if self.live else every
        self.counts: Counter[str] = Counter()
        self.started = time.perf_counter()
        self.last_shown = self.started

    def update(self, rows: list[dict[str, Any]]) -> None:
        self.counts.update(row["verdict"] for row in rows)
        now = time.perf_counter()
        if now - self.last_shown >= self.every:
            self.last_shown = now
            self._show(now)

    def close(self) -> None:
        self._show(time.perf_counter())
        if self.live:
            self.stream.write("\n")
        self.stream.flush()

    def _show(self, now: float) -> None:
        scored = sum(self.counts.values())
        rate = scored / max(now - self.started, 1e-9)
        line = (
            f"{self.done_before + scored}/{self.total} pairs  {rate:.1f} pairs/s  "
            f"accept {self.counts['accept']}  review {self.counts['review']}  reject {self.counts['reject']}  error {self.counts['error']}"
        )
        if extra := self.extra():
            line += f"  {extra}"
        self.stream.write(f"\r{line}\x1b[K" if self.live else line + "\n")
        self.stream.flush()
