"""Facts about the Makefile: `make run` installs what serving and the model build need, not the
test and lint tools; which test tiers each target runs, and what CI runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str) -> str:
    # -B: every target out of date, -n: print the commands without running them.
    done = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def test_run_installs_serving_only() -> None:
    commands = _dry_run("run")
    assert "-e '.[export]'" in commands
    assert "test]" not in commands and "pytest" not in commands


def test_test_installs_the_test_tools() -> None:
    assert "-e '.[export,test]'" in _dry_run("test")


def _pytest_runs(target: str) -> list[str]:
    return [line for line in _dry_run(target).splitlines() if "-m pytest" in line]


def test_test_runs_every_tier_under_tests_and_no_load_tool() -> None:
    (run,) = _pytest_runs("test")
    # No path given: pytest's testpaths, which name tests/ alone (unit, integration, export, e2e).
    assert run.split("-m pytest", 1)[1].split() == ["-q", "-ra"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'testpaths = ["tests"]' in pyproject
    assert {"unit", "integration", "export", "e2e"} <= {p.name for p in (ROOT / "tests").iterdir() if p.is_dir()}


def test_the_tier_targets_run_their_folder() -> None:
    assert [run.split()[-1] for run in _pytest_runs("test-unit")] == ["tests/unit"]
    assert [run.split()[-1] for run in _pytest_runs("test-export")] == ["tests/export"]
    assert [run.split()[-1] for run in _pytest_runs("bench-smoke")] == ["loadtest/tests"]


def test_ci_runs_the_bench_smoke_as_its_own_step_after_the_tests() -> None:
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert steps.index("make bench-smoke") == steps.index("make test") + 1


def test_torch_is_the_cpu_build_unless_asked_otherwise() -> None:
    (install,) = [line for line in _dry_run("install").splitlines() if "torch==" in line]
    assert "'torch==2.13.0+cpu'" in install
    assert "--extra-index-url 'https://download.pytorch.org/whl/cpu'" in install  # when no configured source has it
