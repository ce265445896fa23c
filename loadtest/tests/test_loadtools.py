"""The load tools cannot rot: smoke runs of the benchmark runner, the floor and the GPU check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import REPO

pytestmark = pytest.mark.e2e


def test_bench_smoke_writes_a_complete_report(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    steps = [*results["baseline"], *(s for sweep in results["service"].values() for s in sweep)]
    assert steps and all(s["result"]["errors"] == 0 and s["result"]["rps"] > 0 for s in steps)
    assert all(s["mean_batch"] >= 1 for sweep in results["service"].values() for s in sweep)
    assert all(r["rows_per_s"] > 0 for rows in results["raw"].values() for r in rows)
    assert all("intra-op thread" in r["session"] for rows in results["raw"].values() for r in rows)  # said exactly
    assert 0 < results["rss_mb"] < 4096
    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Targets" in report and "Smoke run" in report
    assert any(k.startswith("rerank-") for k in results["service"]) and "/rerank (a query and 32 passages" in report
    assert all(s["result"]["errors"] == 0 and s["result"]["rps"] > 0 for v in results["cache"].values() for s in v)
    assert "## Result cache" in report
    floor = results["floor"]["classify-int8"]  # the c=1 target in paired slices
    assert len(floor["raw_ms"]) == len(floor["service_ms"]) == 2 and min(floor["raw_ms"] + floor["service_ms"]) > 0
    assert "paired slices" in report and "gap median" in report
    fronts = results["front_ends"]  # one process against two front ends, on the near-free model
    assert {k: len(v) for k, v in fronts["rows"].items()} == {"1": 2, "2": 2}
    assert all(s["result"]["errors"] == 0 for rows in fronts["rows"].values() for s in rows)
    for measure in ("rss", "pss"):
        assert set(fronts["memory"]["2"][measure]) == {"supervisor", "engine", "front ends"}
        assert len(fronts["memory"]["2"][measure]["front ends"]) == 2
    assert "## Front ends" in report
    long = results["long"]  # long inputs read whole against one window a request
    assert long["mean_windows"] > 1 and all(s["result"]["errors"] == 0 for v in long["rows"].values() for s in v)
    assert "## Long inputs" in report
    bulk = results["bulk"]  # run-batch beside live traffic, alone, and in-process
    assert min(bulk["bulk_lines_per_s"], bulk["in_process_lines_per_s"], bulk["starvation"]["batch_answered"]) > 0
    assert "## Bulk work beside live traffic" in report
    assert (tmp_path / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_floor_prints_the_raw_grid_the_paired_gap_and_the_services_own_time() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.floor",
            "--grid-seconds",
            "0.2",
            "--slices",
            "2",
            "--slice-seconds",
            "1",
            "--requests",
            "30",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    grid, slices, own = proc.stdout.splitlines()
    assert grid.count("t/") == 6 and "fastest" in grid, grid
    assert slices.startswith("2 paired slices") and "gap per slice median" in slices, slices
    app_ms = float(own.split("ms in the app")[0].rsplit(":", 1)[1])
    assert 0 < app_ms < 50, own  # read from the service's timing headers


def test_cuda_check_runs_its_cpu_part_here_and_its_doc_is_its_json(tmp_path: Path) -> None:
    """The GPU check's CUDA part needs a GPU; its CPU part (the batch-1 grid and the
    instances) runs anywhere, on the default classifier. docs/cuda.md's tables are what
    --markdown renders from docs/cuda.json."""
    out = tmp_path / "cuda.json"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.cuda_check", "--skip", "cuda", "--seconds", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    grid = [r for r in rows if r["check"] == "cpu_raw_batch1"]
    assert {r["spinning"] for r in grid} == {"off", "on", "on+stop"} and all(r["p50_ms"] > 0 for r in grid)
    instances = [r for r in rows if r["check"] == "cpu_instances"]
    assert {(r["instances"], r["concurrency"]) for r in instances} >= {("default", 1), ("default", 64), (1, 64)}
    assert all(r["errors"] == 0 and r["rps"] > 0 for r in instances), instances
    from loadtest.cuda_check import markdown

    recorded = json.loads((REPO / "docs" / "cuda.json").read_text())
    assert (REPO / "docs" / "cuda.md").read_text().startswith(markdown(recorded))
