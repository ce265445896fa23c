"""The batch file format: parsing, the duplicate check, resuming from an output a crash cut
short, and output lines that stay one line of JSON whatever the body."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from service.batch_jobs.lines import (
    Bad,
    DuplicateId,
    Output,
    Request,
    answered,
    count_and_check,
    failed,
    parse,
    read_done,
)
from service.batch_jobs.progress import Progress

URLS = frozenset({"/classify", "/embed"})


def line(custom_id: str, url: str = "/classify") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": {"inputs": "a"}}) + b"\n"


def test_a_request_line_is_parsed_and_bad_ones_say_why() -> None:
    ok = parse(3, line("a"), URLS)
    assert isinstance(ok, Request) and (ok.line, ok.custom_id, ok.url, ok.body) == (
        3,
        "a",
        "/classify",
        {"inputs": "a"},
    )
    bad = {
        b"{nope": (None, "line 9 is not JSON"),
        b"[1]": (None, "line 9 is not a JSON object"),
        b'{"method": "POST"}': (None, "line 9 has no custom_id (a non-empty string)"),
        b'{"custom_id": "x", "method": "GET", "url": "/embed", "body": {}}': ("x", 'line 9: method must be "POST"'),
        b'{"custom_id": "x", "method": "POST", "url": "/chat", "body": {}}': (
            "x",
            "line 9: url must be one of /classify, /embed",
        ),
        b'{"custom_id": "x", "method": "POST", "url": "/embed", "body": []}': (
            "x",
            "line 9: body must be a JSON object",
        ),
    }
    for raw, (custom_id, message) in bad.items():
        assert parse(9, raw, URLS) == Bad(9, custom_id, message)


def test_duplicate_custom_ids_are_refused_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(line("a") + b"\n" + b"{not json\n" + line("b") + line("a"))
    with pytest.raises(DuplicateId, match=r"line 5 repeats custom_id 'a' of line 1"):
        count_and_check(path)
    path.write_bytes(line("a") + b"\n   \n" + b"{not json\n" + line("b"))
    assert count_and_check(path) == 3  # blank lines are not requests; the bad one is


def test_a_resume_reads_what_is_done_and_cuts_a_line_left_half_written(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    whole = answered("a", 200, "r1", b'{"x":1}') + failed(Bad(7, None, "line 7 is not JSON"), "invalid_line", "no")
    path.write_bytes(whole + answered("b", 200, "r2", b'{"x":2}')[:30])
    done = read_done(path)
    assert (done.ids, done.lines) == ({"a"}, {7})
    assert path.read_bytes() == whole
    assert Bad(7, None, "") in done and Request(2, "a", "/embed", {}, 1) in done
    assert Request(3, "b", "/embed", {}, 1) not in done
    assert read_done(tmp_path / "none.jsonl").ids == set()


def test_output_lines_are_one_line_of_json_whatever_the_body(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    out = Output(path)
    out.write(answered("a", 200, "r", b'{"rows": [1.5, 2]}'))
    out.write(answered("b", 502, "", b"<html>\nBad Gateway</html>", trusted=False))
    out.write(answered("c", 200, "", b'{\n  "x": 1\n}', trusted=False))
    out.close()
    a, b, c = (orjson.loads(raw) for raw in path.read_bytes().splitlines())
    assert a["response"] == {"status_code": 200, "request_id": "r", "body": {"rows": [1.5, 2]}} and a["error"] is None
    assert a["id"].startswith("batch_req_") and a["custom_id"] == "a"
    assert b["response"]["body"] == "<html>\nBad Gateway</html>"
    assert c["response"]["body"] == {"x": 1}


def test_off_a_terminal_progress_is_a_plain_line_and_a_summary() -> None:
    stream = io.StringIO()
    progress = Progress(total=10, skipped=4, stream=stream)
    progress._said -= 60  # as if the last line was a minute ago
    progress.advance(error=True)
    for _ in range(5):
        progress.advance(error=False)
    summary = progress.close()
    first, last = stream.getvalue().splitlines()
    assert first.startswith("run-batch: 5/10 lines, 1 errors, ")
    assert last == summary
    assert summary.startswith("run-batch: done: 10 lines (6 answered now, 4 already in the output), 1 errors, ")
