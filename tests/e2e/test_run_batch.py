"""`bertserve run-batch` as a real process, in both modes, on a 2,000-line file that mixes
routes and holds a few bad lines: killed part-way (SIGKILL), resumed, and then every
custom_id is in the output exactly once, with the body the route answers to that request
sent alone to a real `bertserve serve` over a socket."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.procs import REPO, Server
from tests.sync import until

pytestmark = pytest.mark.e2e

LINES = 2000
WORDS = [
    "film",
    "plot",
    "actor",
    "scene",
    "quiet",
    "loud",
    "bright",
    "dark",
    "story",
    "music",
    "long",
    "short",
    "warm",
    "cold",
    "fine",
    "odd",
]


def text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(1, 40)))


def request(rng: random.Random, index: int) -> dict[str, Any]:
    url = ("/classify", "/embed", "/v1/embeddings", "/rerank")[index % 4]
    body: dict[str, Any]
    if url == "/classify":
        body = {"inputs": [text(rng) for _ in range(rng.randint(1, 3))]}
    elif url == "/embed":
        body = {"inputs": text(rng)}
    elif url == "/v1/embeddings":
        body = {"input": [text(rng), text(rng)], "model": "tiny-emb"}
    else:
        body = {"query": text(rng), "texts": [text(rng) for _ in range(3)], "model": "tiny-emb"}
    return {"custom_id": f"req-{index}", "method": "POST", "url": url, "body": body}


# Bad lines, by line number (1-based): each gets its error in the output, none stops the job.
BAD = {
    7: b"{not json\n",
    100: orjson.dumps({"custom_id": "bad-url", "method": "POST", "url": "/v1/chat/completions", "body": {}}) + b"\n",
    500: orjson.dumps({"custom_id": "bad-body", "method": "POST", "url": "/classify", "body": {"inputs": []}}) + b"\n",
    900: orjson.dumps({"method": "POST", "url": "/classify", "body": {"inputs": "x"}}) + b"\n",  # no custom_id
    1300: orjson.dumps({"custom_id": "no-tagger", "method": "POST", "url": "/classify/tokens", "body": {"inputs": "a"}})
    + b"\n",
}


# fp32 in both modes: dynamic int8 scales each batch's activations by the batch, so an int8
# row batched with others is not the row sent alone to the last 1e-4 (docs/design.md).
FP32 = {"BERTSERVE_VARIANT": "fp32"}


@pytest.fixture(scope="module")
def server(tiny_repo: Path) -> Iterator[Server]:
    with Server(tiny_repo, env=FP32) as srv:
        yield srv


@pytest.fixture(scope="module")
def batch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(26)
    path = tmp_path_factory.mktemp("run-batch") / "input.jsonl"
    with path.open("wb") as f:
        for line in range(1, LINES + 1):
            f.write(BAD.get(line) or orjson.dumps(request(rng, line)) + b"\n")
    return path


@pytest.fixture(scope="module")
def one_by_one(server: Server, batch_file: Path) -> dict[str, tuple[int, Any]]:
    """custom_id -> (status, body) of each line's request sent alone to the service."""
    answers = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for raw in batch_file.read_bytes().splitlines():
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if "custom_id" in line and line["url"] != "/v1/chat/completions":
                r = client.post(line["url"], json=line["body"])
                answers[line["custom_id"]] = (r.status_code, r.json())
    return answers


def run_batch(batch_file: Path, output: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "service", "run-batch", "--input", str(batch_file), "--output", str(output), *args]
    with (output.parent / f"{output.name}.log").open("ab") as log:
        env = {**os.environ, "BERTSERVE_LOG_LEVEL": "warning", **FP32}
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)


def whole_lines(output: Path) -> int:
    return output.read_bytes().count(b"\n") if output.exists() else 0


def killed_then_resumed(batch_file: Path, output: Path, *args: str) -> str:
    """Run the job one request at a time (slow enough to be caught part-way), SIGKILL it,
    then run it again to its end; the second run's log."""
    first = run_batch(batch_file, output, "--concurrency", "1", *args)
    until(lambda: whole_lines(output) >= 200 or first.poll() is not None, timeout=120, what="200 lines answered")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    answered_before = whole_lines(output)
    assert answered_before < LINES, "the job ended before it was killed"
    log = output.parent / f"{output.name}.log"
    log.write_bytes(b"")
    second = run_batch(batch_file, output, *args)
    assert second.wait(300) == 0, log.read_text()
    summary = log.read_text()
    assert f", {answered_before} already in the output)" in summary, summary
    return summary


def close(got: Any, want: Any, where: str = "body") -> None:
    """Equal, floats within 1e-4: rows batched with others may differ in the last digits."""
    if isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-4), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            close(g, w, f"{where}[{index}]")
    else:
        assert got == want, where


def check(output: Path, one_by_one: dict[str, tuple[int, Any]]) -> None:
    lines = [orjson.loads(raw) for raw in output.read_bytes().splitlines()]  # every line whole JSON
    assert len(lines) == LINES
    ids = Counter(line["custom_id"] for line in lines)
    assert ids[None] == 2  # the line that is not JSON and the one without a custom_id
    del ids[None]
    assert set(ids.values()) == {1}, [k for k, v in ids.items() if v > 1]
    assert set(ids) == {*one_by_one, "bad-url"}
    by_id = {line["custom_id"]: line for line in lines}
    assert by_id["bad-url"]["response"] is None
    assert by_id["bad-url"]["error"]["code"] == "invalid_line"
    assert sorted(line["error"]["line"] for line in lines if line["custom_id"] is None) == [7, 900]
    for custom_id, (status, body) in one_by_one.items():
        response = by_id[custom_id]["response"]
        assert response["status_code"] == status, custom_id
        close(response["body"], body, custom_id)
    assert {one_by_one[c][0] for c in ("bad-body", "no-tagger")} == {422, 404}


def test_url_mode_killed_and_resumed(
    server: Server, batch_file: Path, one_by_one: dict[str, tuple[int, Any]], tmp_path: Path
) -> None:
    output = tmp_path / "url.jsonl"
    summary = killed_then_resumed(batch_file, output, "--url", server.url)
    assert "run-batch: done: 2000 lines" in summary
    check(output, one_by_one)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'priority="batch"' in metrics


def test_in_process_mode_killed_and_resumed(
    tiny_repo: Path, batch_file: Path, one_by_one: dict[str, tuple[int, Any]], tmp_path: Path
) -> None:
    output = tmp_path / "local.jsonl"
    killed_then_resumed(batch_file, output, "--models", str(tiny_repo))
    check(output, one_by_one)


def test_duplicate_custom_ids_refuse_the_job_naming_the_line(batch_file: Path, tmp_path: Path) -> None:
    duplicated = tmp_path / "dup.jsonl"
    lines = batch_file.read_bytes().splitlines(keepends=True)
    duplicated.write_bytes(b"".join([*lines[:20], lines[1]]))
    output = tmp_path / "dup-out.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "service", "run-batch", "--input", str(duplicated), "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "line 21 repeats custom_id 'req-2' of line 2" in done.stderr
    assert not output.exists()
