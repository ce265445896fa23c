"""How far a job is: a tqdm bar on a terminal (lines done of the total, lines a second, ETA,
errors so far); off a terminal (a log file, CI) a plain line every few seconds instead, which
a log keeps readable where a bar's carriage returns would not; and a summary at the end."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm  # type: ignore[import-untyped]

PLAIN_EVERY_S = 5.0


class Progress:
    def __init__(self, total: int, skipped: int, stream: TextIO | None = None, bar: bool | None = None) -> None:
        """`total`: the input's requests; `skipped`: those the output already held (a resume)."""
        self.total, self.skipped = total, skipped
        self.done = self.errors = 0
        self._stream = stream or sys.stderr
        self._started = self._said = time.monotonic()
        use_bar = self._stream.isatty() if bar is None else bar
        self._bar: Any = None
        if use_bar:
            self._bar = tqdm(
                total=total, initial=skipped, unit="line", file=self._stream, dynamic_ncols=True, smoothing=0.05
            )
            self._bar.set_postfix(errors=0, refresh=False)

    def advance(self, error: bool) -> None:
        self.done += 1
        if error:
            self.errors += 1
        if self._bar is not None:
            if error:
                self._bar.set_postfix(errors=self.errors, refresh=False)
            self._bar.update()
            return
        now = time.monotonic()
        if now - self._said >= PLAIN_EVERY_S:
            self._said = now
            print(self._line(now), file=self._stream, flush=True)

    def _line(self, now: float) -> str:
        rate = self.done / max(now - self._started, 1e-9)
        left = self.total - self.skipped - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        return (
            f"run-batch: {self.skipped + self.done}/{self.total} lines, {self.errors} errors, "
            f"{rate:.1f} lines/s, ETA {eta}"
        )

    def close(self) -> str:
        """End the bar; the summary, also printed."""
        if self._bar is not None:
            self._bar.close()
        wall = time.monotonic() - self._started
        summary = (
            f"run-batch: done: {self.total} lines ({self.done} answered now, {self.skipped} already in the output), "
            f"{self.errors} errors, {wall:.1f} s, {self.done / max(wall, 1e-9):.1f} lines/s"
        )
        print(summary, file=self._stream, flush=True)
        return summary
