"""Start and watch the processes under test: CPU seconds and resident memory from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time of a process, or of one of its threads (the main thread's id is the pid)."""
    stat = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def launch(cmd: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    if log is None:
        return subprocess.Popen(
            cmd, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=out)


def wait_ready(proc: subprocess.Popen[bytes], ready_url: str, timeout: float = 180) -> None:
    """Poll until `ready_url` answers 200; fail at once if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{ready_url}: the process exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(ready_url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"{ready_url} not ready after {timeout}s")


def start(
    cmd: list[str], env: dict[str, str], ready_url: str, log: Path | None, timeout: float = 180
) -> subprocess.Popen[bytes]:
    proc = launch(cmd, env, log)
    wait_ready(proc, ready_url, timeout)
    return proc


def serve_cmd(port: int, models: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "service", "serve", "--port", str(port)]
    return [*cmd, "--models", str(models)] if models is not None else cmd


def baseline_cmd(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "loadtest.baseline_app:app", "--port", str(port), "--log-level", "warning"]


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM (the service drains), then SIGKILL if it is still there; the exit code."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
