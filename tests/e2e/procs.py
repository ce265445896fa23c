"""Real processes on real sockets: start `bertserve serve`, wait until ready, stop it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from loadtest.procs import REPO, free_port, launch, serve_cmd, stop, wait_ready

DEFAULT_MODELS = REPO / "models"
__all__ = ["DEFAULT_MODELS", "REPO", "Server", "free_port", "run_serve"]


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
