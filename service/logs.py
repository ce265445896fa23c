"""JSON logs: one object per line, with the fields a log pipeline can index.

At the default level every request writes one access line from the event loop, so the
formatter is kept lean: the timestamp's seconds part is rendered once per second, and only
the tail of the record, where the extra fields are, is walked.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from itertools import islice

import orjson

# A record's own attributes come first in its __dict__, the extra fields after them, in the
# order given. Not extra fields either: those a formatter adds, and `color_message`,
# uvicorn's copy of its message with ANSI colour codes, for terminals: logs are for machines.
_OWN = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_NOT_EXTRA = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # one tuple, replaced whole: safe across threads

    def _timestamp(self, record: logging.LogRecord) -> str:
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if "\x1b" in message:
            message = _ANSI.sub("", message)
        entry: dict[str, object] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        fields = record.__dict__
        for key in islice(fields, _OWN, None):
            if key not in _NOT_EXTRA:
                entry[key] = fields[key]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Thread and process names are not written: do not look them up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Nor where the call was made: finding it walks the caller's frames for every record
    # (the logging HOWTO's "Optimization" section), a noticeable part of the access line's
    # cost right after a model run, when nothing is in the CPU caches (docs/design.md,
    # "Measured figures").
    logging._srcfile = None
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # bertserve.access logs every request
