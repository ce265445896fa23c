"""The stages of one export as the user sees them: a progress bar on a terminal (tqdm), one log
line per finished stage with its duration otherwise (a container's log)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("bertserve")


def stage_count(int8: bool, fp16: bool) -> int:
    """load, export, verify fp32, and a build and a verification per reduced precision."""
    return 3 + 2 * int8 + 2 * fp16


class Progress:
    def __init__(self, name: str, total: int, terminal: bool | None = None) -> None:
        self.name = name
        self.stage: str | None = None
        self.started = time.perf_counter()
        self.count = 0
        self.bar: Any = None
        if sys.stderr.isatty() if terminal is None else terminal:
            from tqdm import tqdm  # type: ignore[import-untyped]

            self.bar = tqdm(
                total=total,
                desc=f"export {name}",
                unit="stage",
                bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {postfix} [{elapsed}]",
                file=sys.stderr,
            )

    def begin(self, stage: str) -> None:
        self._finish()
        self.stage, self.started = stage, time.perf_counter()
        if self.bar is not None:
            self.bar.set_postfix_str(stage)

    def _finish(self) -> None:
        if self.stage is None:
            return
        seconds = time.perf_counter() - self.started
        if self.bar is not None:
            self.bar.update(min(1, self.bar.total - self.bar.n))
        else:
            log.info(
                f"export {self.name}: {self.stage} done in {seconds:.1f} s",
                extra={"model": self.name, "stage": self.stage, "seconds": round(seconds, 2)},
            )
        self.stage = None

    def close(self, ok: bool) -> None:
        if ok:
            self._finish()
        if self.bar is not None:
            self.bar.close()
