"""The tracing-cost A/B cannot rot: a smoke run of it on the default models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import DEFAULT_MODELS, REPO

pytestmark = pytest.mark.e2e


def test_cost_scenario_runs(tmp_path: Path) -> None:
    """`python -m loadtest.tracing_cost` cannot rot: a smoke run of two of its arms, on the
    default models, in which the traced arm really exported its spans."""
    if not (DEFAULT_MODELS / "minilm-sentiment" / "manifest.json").is_file():
        pytest.fail("default models missing: run `make models` first")
    out = tmp_path / "cost.json"
    cmd = [sys.executable, "-m", "loadtest.tracing_cost", "--smoke", "--arms", "unset", "on", "--json", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    medians = json.loads(out.read_text())["medians"]
    assert all(m["errors"] == 0 and m["rps"] > 0 for m in medians.values())
    assert medians["unset"]["spans_per_request"] == 0
    assert medians["on"]["spans_per_request"] > 3  # request, tokenize, queue, inference
    assert "rps ratio" in done.stdout
