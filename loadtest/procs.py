"""Start and watch the processes under test: CPU seconds and resident memory from /proc.

Starting, readiness and stopping are the tests' server launcher (tests/e2e/procs.py), one
copy for both; what is here only measuring needs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.procs import REPO, free_port, launch, rss_mb, serve_cmd, stop, wait_ready

__all__ = [
    "REPO",
    "baseline_cmd",
    "cpu_seconds",
    "free_port",
    "launch",
    "pss_mb",
    "rss_mb",
    "serve_cmd",
    "start",
    "stop",
    "tree_cpu_seconds",
    "tree_rss_mb",
    "wait_ready",
]


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time of a process, or of one of its threads (the main thread's id is the pid)."""
    stat = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int, measure: Callable[[int], float]) -> float:
    total = measure(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += measure(int(child))
        except FileNotFoundError:  # exited meanwhile
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children alive now: a supervisor's engine and front ends
    (BERTSERVE_API_SERVERS), or the one process."""
    return _tree(pid, cpu_seconds)


def pss_mb(pid: int) -> float:
    """Proportional set size: resident memory with each page shared among n processes
    counted 1/n in each (libraries' code, mapped model files), so a process tree's sum is
    what it occupies, where the sum of resident memory counts a shared page once per process."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Pss")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children alive now, as tree_cpu_seconds."""
    return _tree(pid, rss_mb)


def start(
    cmd: list[str], env: dict[str, str], ready_url: str, log: Path | None, timeout: float = 180
) -> subprocess.Popen[bytes]:
    proc = launch(cmd, env, log)
    wait_ready(proc, ready_url, timeout)
    return proc


def baseline_cmd(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "loadtest.baseline_app:app", "--port", str(port), "--log-level", "warning"]
