"""`make run` installs what serving and the model build need, not the test and lint tools."""

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
