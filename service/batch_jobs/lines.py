"""The batch file format, OpenAI's (which vLLM's run-batch also reads and writes).

Input, one request a line:
    {"custom_id": "...", "method": "POST", "url": "/classify", "body": {...}}
Output, one answer a line:
    {"id": "batch_req_...", "custom_id": "...",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}
A line the service answered, whatever its status, has a `response` (its body is the route's
own answer or error envelope); a line that was never answered (not a request, or no answer
after the retries) has `response: null` and an `error` with a code and a message.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Request:
    line: int  # 1-based, as an editor numbers it
    custom_id: str
    url: str
    body: dict[str, Any]
    size: int  # bytes of the line: how long its texts are, near enough to sort by


@dataclass(frozen=True, slots=True)
class Bad:
    """A line that is not a request we can send: answered with an error, never sent."""

    line: int
    custom_id: str | None
    message: str


class DuplicateId(Exception):
    """Two lines share a custom_id: the job is refused before it starts."""


def parse(line: int, raw: bytes, urls: frozenset[str]) -> Request | Bad:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Bad(line, None, f"line {line} is not JSON")
    if not isinstance(value, dict):
        return Bad(line, None, f"line {line} is not a JSON object")
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return Bad(line, None, f"line {line} has no custom_id (a non-empty string)")
    if value.get("method") != "POST":
        return Bad(line, custom_id, f'line {line}: method must be "POST"')
    url = value.get("url")
    if url not in urls:
        return Bad(line, custom_id, f"line {line}: url must be one of {', '.join(sorted(urls))}")
    body = value.get("body")
    if not isinstance(body, dict):
        return Bad(line, custom_id, f"line {line}: body must be a JSON object")
    return Request(line, custom_id, url, body, len(raw))


def numbered(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every line that is not blank, read one at a time."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


def count_and_check(path: Path) -> int:
    """The input's requests, counted in one streaming pass that refuses duplicate custom_ids
    (naming both lines). Only the ids are held: about 100 bytes each."""
    seen: dict[str, int] = {}
    total = 0
    for number, raw in numbered(path):
        total += 1
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # answered with its error when the job reaches it
        custom_id = value.get("custom_id") if isinstance(value, dict) else None
        if isinstance(custom_id, str) and custom_id:
            first = seen.setdefault(custom_id, number)
            if first != number:
                raise DuplicateId(f"line {number} repeats custom_id {custom_id!r} of line {first}")
    return total


@dataclass
class Done:
    """What an output file already holds: the custom_ids answered, and the lines without one
    (answered with their error) by number."""

    ids: set[str]
    lines: set[int]

    def __contains__(self, item: Request | Bad) -> bool:
        if item.custom_id is not None:
            return item.custom_id in self.ids
        return item.line in self.lines


def read_done(path: Path) -> Done:
    """Scan an existing output, and cut a last line left unfinished by a crash (the only place
    one can be: lines are written whole, one write each), so the file holds whole lines only."""
    done = Done(set(), set())
    if not path.exists():
        return done
    good = 0
    with path.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                break
            good += len(raw)
            if value.get("custom_id") is not None:
                done.ids.add(value["custom_id"])
            elif isinstance(value.get("error"), dict) and isinstance(value["error"].get("line"), int):
                done.lines.add(value["error"]["line"])
    if good != path.stat().st_size:
        os.truncate(path, good)
    return done


class Output:
    """The output file, appended to a whole line at a time: one write(2) each on a file opened
    for appending, so a crash leaves whole lines (read_done cuts the one it may interrupt)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        os.close(self._fd)


def _head(custom_id: str | None) -> bytes:
    # orjson's object without its closing brace: the rest is spliced in as bytes.
    return orjson.dumps({"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id})[:-1]


def answered(custom_id: str, status: int, request_id: str, body: bytes, trusted: bool = True) -> bytes:
    """An answer line; `body` is the route's JSON as it sent it, spliced in unparsed. Not
    `trusted` (it came over a network): checked to be one line of JSON first."""
    if not trusted or b"\n" in body:
        body = _json_or_text(body)
    response = b'{"status_code":%d,"request_id":%s,"body":%s}' % (status, orjson.dumps(request_id), body)
    return _head(custom_id) + b',"response":' + response + b',"error":null}\n'


def _json_or_text(body: bytes) -> bytes:
    """A body as one line of JSON: itself when it is one, re-serialised when it is JSON on
    several lines, else as a string."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return orjson.dumps(body.decode("utf-8", "replace"))
    return body if b"\n" not in body else orjson.dumps(value)


def failed(item: Request | Bad, code: str, message: str) -> bytes:
    """A line never answered: its error, with its line number (how a line without a custom_id
    is known on a resume)."""
    error = orjson.dumps({"code": code, "message": message, "line": item.line})
    return _head(item.custom_id) + b',"response":null,"error":' + error + b"}\n"
