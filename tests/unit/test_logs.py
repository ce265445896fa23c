"""The JSON log lines: one clean object per line, whatever the library that logs."""

from __future__ import annotations

import io
import logging
import re
import sys
import time
from collections.abc import Iterator

import orjson
import pytest

from service import logs


def _record(msg: str, *args: object, extra: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.getLogger("uvicorn.error").makeRecord(
        "uvicorn.error", logging.INFO, __file__, 1, msg, args, exc_info, extra=extra
    )


def test_uvicorn_colour_message_and_ansi_escapes_stay_out_of_the_line() -> None:
    # What uvicorn logs at start-up: the plain message, and a coloured copy as an extra.
    record = _record(
        "Uvicorn running on %s (Press CTRL+C to quit)",
        "http://127.0.0.1:8000",
        extra={"color_message": "Uvicorn running on \x1b[1m%s\x1b[0m (Press CTRL+C to quit)"},
    )
    line = logs.JsonFormatter().format(record)
    assert "\x1b" not in line and "\\u001b" not in line
    entry = orjson.loads(line)
    assert "color_message" not in entry
    assert entry["msg"] == "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)"


def test_escape_codes_in_a_message_are_removed() -> None:
    line = logs.JsonFormatter().format(_record("Started server process [\x1b[36m%d\x1b[0m]", 42))
    assert orjson.loads(line)["msg"] == "Started server process [42]"


def test_fields_of_an_access_line() -> None:
    extra: dict[str, object] = {"request_id": "abc", "route": "/classify", "status": 200, "duration_ms": 4.2}
    record = _record("request", extra=extra)
    entry = orjson.loads(logs.JsonFormatter().format(record))
    assert list(entry) == ["ts", "level", "logger", "msg", "request_id", "route", "status", "duration_ms"]
    assert entry["level"] == "info" and entry["logger"] == "uvicorn.error" and entry["msg"] == "request"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(entry["ts"]))
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
    assert entry["ts"] == expected


def test_timestamp_follows_the_clock_across_seconds() -> None:
    formatter = logs.JsonFormatter()
    first, second = _record("a"), _record("b")
    first.created, first.msecs = 1_700_000_000.25, 250.0
    second.created, second.msecs = 1_700_000_001.5, 500.0
    assert orjson.loads(formatter.format(first))["ts"] == "2023-11-14T22:13:20.250Z"
    assert orjson.loads(formatter.format(second))["ts"] == "2023-11-14T22:13:21.500Z"


def test_exception_is_one_field() -> None:
    entry = orjson.loads(logs.JsonFormatter().format(_record("failed", exc=True)))
    assert "ValueError: boom" in str(entry["exc"])


def test_a_formatter_added_field_is_not_an_extra() -> None:
    record = _record("hello %s", "world")
    logging.Formatter("%(asctime)s %(message)s").format(record)  # sets record.message and asctime
    entry = orjson.loads(logs.JsonFormatter().format(record))
    assert set(entry) == {"ts", "level", "logger", "msg"}


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    flags = logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.logThreads, logging.logProcesses, logging.logMultiprocessing = flags


def test_configured_logging_writes_one_clean_json_object_per_line(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.configure("info")
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 7, extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"}
    )
    logging.getLogger("bertserve.access").info("request", extra={"status": 200})
    logging.getLogger("bertserve").debug("not at info")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert all("\x1b" not in line and "color_message" not in line for line in lines)
    assert [orjson.loads(line)["msg"] for line in lines] == ["Started server process [7]", "request"]
