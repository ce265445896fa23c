"""Real processes on real sockets: start `bertserve serve`, wait until ready, stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = REPO / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self, models: Path, port: int | None = None, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.models = models
        self.env = {**os.environ, "BERTSERVE_LOG_LEVEL": "warning", **(env or {})}
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--models", str(self.models), "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=out,
            stderr=out,
        )
        return self

    def wait_ready(self, timeout: float = 180) -> Server:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} before it was ready")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server on {self.url} not ready after {timeout}s")

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def __enter__(self) -> Server:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.terminate()


def run_serve(models: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `bertserve serve` expecting it to fail at start-up."""
    return subprocess.run(
        [sys.executable, "-m", "service", "serve", "--models", str(models), "--port", str(free_port())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
