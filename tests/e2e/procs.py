"""The server launcher: start `bertserve serve` as a real process, wait until it is ready,
read its resident memory, stop it. The one copy, used by the tests and by loadtest/
(which adds only what measuring needs: CPU seconds, the baseline app)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = REPO / "models"
__all__ = [
    "DEFAULT_MODELS",
    "REPO",
    "Server",
    "free_port",
    "launch",
    "rss_mb",
    "run_serve",
    "serve_cmd",
    "stop",
    "wait_ready",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def serve_cmd(port: int, models: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "service", "serve", "--port", str(port)]
    return [*cmd, "--models", str(models)] if models is not None else cmd


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM (the service drains), then SIGKILL if it is still there; the exit code."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


class Server:
    """One `bertserve serve` process on a fixed port, which can be stopped and started again
    (a rolling restart) on the same port."""

    def __init__(
        self, models: Path, port: int | None = None, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.models = models
        self.env = {"BERTSERVE_LOG_LEVEL": "warning", **(env or {})}
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.proc = launch(serve_cmd(self.port, self.models), self.env, self.log_path)
        return self

    def wait_ready(self, timeout: float = 180) -> Server:
        assert self.proc is not None
        wait_ready(self.proc, f"{self.url}/health/ready", timeout)
        return self

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return stop(self.proc, timeout)

    def __enter__(self) -> Server:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.terminate()


def run_serve(
    models: Path, env: dict[str, str] | None = None, port: int | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `bertserve serve` expecting it to fail at start-up."""
    return subprocess.run(
        serve_cmd(port or free_port(), models),
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
