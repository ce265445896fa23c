"""Export output is plain lines for logs and CI: no progress bars, no ANSI escapes.

transformers draws a tqdm bar while it loads and saves weights, and writes its load report
(missing or unexpected weights) with ANSI bold and colours, even when stderr is a file. The
bar is switched off through transformers' own switch (tqdm reads its TQDM_* variables once,
at import, too early to set them here). The report matters, a missing classifier head for
one, so it is kept, as plain lines through the export's own log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")

Log = Callable[[str], None]


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


class _PlainLines(logging.Handler):
    """Each line of a record, escapes removed and blank lines dropped, through `log`."""

    def __init__(self, log: Log, prefix: str) -> None:
        super().__init__(logging.WARNING)
        self._log = log
        self._prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        for line in strip_ansi(record.getMessage()).replace("\r", "\n").splitlines():
            if line.strip():
                self._log(f"{self._prefix}{line.rstrip()}")


@contextmanager
def plain_output(log: Log, prefix: str) -> Iterator[None]:
    """While the block runs: no transformers progress bars, and transformers' warnings as
    plain `prefix`-ed lines through `log` instead of its own coloured stderr handler."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logger = hf_logging.get_logger("transformers")  # also installs its handler, so it is removed
    saved = list(logger.handlers)
    for handler in saved:
        logger.removeHandler(handler)
    plain = _PlainLines(log, prefix)
    logger.addHandler(plain)
    try:
        yield
    finally:
        logger.removeHandler(plain)
        for handler in saved:
            logger.addHandler(handler)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
