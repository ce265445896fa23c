"""The A/B runner cannot rot: a short run of two arms on the default models, in which each
arm's settings are shown to have reached its own server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import DEFAULT_MODELS, REPO

pytestmark = pytest.mark.e2e


def test_two_arms_alternate_and_each_server_gets_its_own_settings(tmp_path: Path) -> None:
    if not (DEFAULT_MODELS / "minilm-sentiment" / "manifest.json").is_file():
        pytest.fail("default models missing: run `make models` first")
    out = tmp_path / "ab.json"
    cmd = [
        *(sys.executable, "-m", "loadtest.ab", "--a", "quiet: BERTSERVE_LOG_LEVEL=warning"),
        *("--b", "traced: OTEL_EXPORTER_OTLP_ENDPOINT={sink}", "--measure", "throughput", "latency", "cpu", "memory"),
        *("--rounds", "2", "--seconds", "1", "--warmup", "1", "--json", str(out)),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [len(rows) for rows in result["rounds"].values()] == [2, 2]
    quiet, traced = result["medians"]["quiet"], result["medians"]["traced"]
    for arm in (quiet, traced):
        assert arm["errors"] == arm["c1_errors"] == 0 and arm["rps"] > 0 and arm["c1_p50_ms"] > 0, arm
        assert arm["loop_cpu_ms_per_request"] > 0 and arm["threads_cpu_ms_per_request"] > 0, arm
        assert 0 < arm["rss_ready_mb"] < 4096 and arm["rss_after_load_mb"] > 0, arm
    # The quiet arm's warning level writes no access line and sends no span; the traced arm,
    # with the level the quiet arm set unset again, writes one line per request and exports
    # its spans (request, tokenize, queue, inference).
    assert quiet["log_bytes_per_request"] == 0 and traced["log_bytes_per_request"] > 50
    assert quiet["spans_per_request"] == 0 and traced["spans_per_request"] > 3
    assert "rps ratio" in done.stdout
