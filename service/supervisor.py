"""The supervisor: one engine process and N front-end processes, started, watched and
stopped together (BERTSERVE_API_SERVERS over 1; docs/design.md, "Front ends and the engine").

- The port is bound once, by `bertserve serve` before anything loads, which then becomes
  this process (exec: it keeps none of the serving code's memory, only what it needs to
  watch: about 18 MB resident, no pydantic); every front end accepts on that one socket
  (inherited), so a front end that dies loses no queued connection: the others go on accepting.
- The engine process (service/engine_process.py) loads the models and serves them over
  Unix sockets in a private run folder (service/engine/channel.py).
- A front end that dies is started again at once. An engine that dies is started again too
  (the front ends answer 503 meanwhile, naming the cause); one that fails its start-up
  (exit code 2: a model that cannot be loaded) stops the service with its one-line reason,
  as a single process does. Restarts of a process that keeps dying back off, up to
  MAX_BACKOFF_S.
- SIGTERM drains the front ends (each answers what it accepted), then the engine. SIGHUP is
  passed to the engine, which reloads the repository; the front ends follow its new table.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from service import logs
from service.processes import FRONT_END_VARIABLE, IPC_DIR_VARIABLE
from service.runtime.cpus import available_cpus

if TYPE_CHECKING:  # pydantic and its settings are about 20 MB the supervisor does not hold
    from service.settings import Settings

log = logging.getLogger("bertserve")

EXIT_STARTUP = 2
POLL_S = 0.05
MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
STABLE_S = 30.0
PR_SET_PDEATHSIG = 1  # prctl(2)  # a process that lived this long had not been dying: its next restart is at once


def api_servers(settings: Settings, cpus: int | None = None, on_cuda: bool | None = None) -> int:
    """How many front ends: the setting, or under `auto` what the measurements say
    (docs/design.md, "Front ends and the engine"). On the CPU the model and the front ends
    share the cores, and on 2 cores one front end serves as much as two (the figures:
    docs/benchmarks.md): one process, no IPC, up to 8 CPUs; above, one front end per 8.
    On CUDA the device does the model's work and the front ends are the ceiling: one per
    2 CPUs, 2 to 8."""
    if settings.api_servers != "auto":
        return int(settings.api_servers)
    cpus = available_cpus() if cpus is None else cpus
    if on_cuda is None:
        from service.runtime.session import CUDA, resolve_providers  # onnxruntime: not in the supervisor

        try:
            on_cuda = resolve_providers(settings.provider)[0] == CUDA
        except Exception:  # an unusable provider setting fails later, with its own message
            on_cuda = False
    if on_cuda:
        return max(2, min(8, cpus // 2))
    return 1 if cpus <= 8 else min(8, cpus // 8)


def _die_with_parent() -> None:
    """In a child, before it runs: SIGTERM when the supervisor dies, however it dies (even
    SIGKILL), so no front end keeps the port and no engine its memory without it (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class Limits:
    """What the supervisor needs of the settings, handed over on its command line by
    `become_supervisor` (the settings were read and checked there): reading them again here
    would load pydantic into a process that only watches."""

    drain_timeout_s: float
    request_timeout_s: float
    log_level: str

    def argv(self) -> list[str]:
        return [str(self.drain_timeout_s), str(self.request_timeout_s), self.log_level]

    @classmethod
    def parse(cls, args: Sequence[str]) -> Limits:
        drain, request, level = args
        return cls(float(drain), float(request), level)


@dataclass
class Child:
    role: str  # "engine" or "front end N"
    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff_s: float = MIN_BACKOFF_S
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, pass_fds=self.pass_fds, preexec_fn=_die_with_parent)
        self.started = time.monotonic()
        self.restart_at = None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, limits: Limits, sock: socket.socket, env: Mapping[str, str], count: int) -> None:
        self.limits = limits
        # Short: a Unix socket's path is limited to about 100 bytes.
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="bertserve-"))
        base = {**env, IPC_DIR_VARIABLE: str(self.ipc_dir)}
        python = sys.executable
        self.engine = Child("engine", [python, "-m", "service.engine_process"], base)
        fd = sock.fileno()
        self.front_ends = [
            Child(
                f"front end {i}",
                [python, "-m", "service.server", "--front-end", str(fd)],
                {**base, FRONT_END_VARIABLE: str(i)},
                pass_fds=(fd,),
            )
            for i in range(count)
        ]
        self._stopping = False
        self._exit_code = 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, lambda *_: self._stop())
        signal.signal(signal.SIGHUP, lambda *_: self.engine.signal(signal.SIGHUP))
        try:
            self.engine.start()
            for front_end in self.front_ends:
                front_end.start()
            log.info(
                f"supervising 1 engine process and {len(self.front_ends)} front ends",
                extra={"engine": self._pid(self.engine), "front_ends": [self._pid(f) for f in self.front_ends]},
            )
            while not self._stopping:
                self._watch()
                time.sleep(POLL_S)
            self._shut_down()
        finally:
            for child in [*self.front_ends, self.engine]:
                child.signal(signal.SIGKILL)
            shutil.rmtree(self.ipc_dir, ignore_errors=True)
        return self._exit_code

    def _watch(self) -> None:
        now = time.monotonic()
        for child in [self.engine, *self.front_ends]:
            process = child.process
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                    log.warning(f"{child.role} restarted", extra={"pid": self._pid(child), "restarts": child.restarts})
                continue
            if process is None or process.poll() is None:
                continue
            code = process.returncode
            if child is self.engine and code == EXIT_STARTUP:
                # The models cannot be loaded: the engine said why on stderr. Restarting would
                # only say it again.
                self._exit_code = EXIT_STARTUP
                self._stopping = True
                return
            lived = now - child.started
            child.backoff_s = MIN_BACKOFF_S if lived > STABLE_S else min(MAX_BACKOFF_S, child.backoff_s * 2)
            delay = 0.0 if lived > STABLE_S else child.backoff_s
            child.restart_at = now + delay
            child.restarts += 1
            log.error(
                f"{child.role} exited, restarting",
                extra={"pid": process.pid, "exit_code": code, "restart_in_s": round(delay, 2)},
            )

    def _stop(self) -> None:
        self._stopping = True

    def _shut_down(self) -> None:
        """Front ends first, each draining what it accepted; then the engine, which answers
        what is still in flight."""
        timeout = self.limits.drain_timeout_s + 5
        for front_end in self.front_ends:
            front_end.signal(signal.SIGTERM)
        self._wait(self.front_ends, timeout)
        self.engine.signal(signal.SIGTERM)
        self._wait([self.engine], self.limits.request_timeout_s + 5)

    @staticmethod
    def _wait(children: list[Child], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for child in children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.signal(signal.SIGKILL)

    @staticmethod
    def _pid(child: Child) -> int | None:
        return child.process.pid if child.process is not None else None


def become_supervisor(sock: socket.socket, count: int, overrides: Mapping[str, object], settings: Settings) -> None:
    """Replace this process (`bertserve serve`, which checked the settings and the repository
    and bound `sock`) with the supervisor: the command line's options become the settings'
    variables, which every child reads (Settings()); the supervisor's own few values go on its
    command line."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"BERTSERVE_{name.upper()}"] = str(value)
    limits = Limits(settings.drain_timeout_s, settings.request_timeout_s, settings.log_level)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "service.supervisor", str(sock.fileno()), str(count), *limits.argv()]
    os.execv(sys.executable, argv)


def main(args: Sequence[str]) -> int:
    fd, count, *rest = args
    limits = Limits.parse(rest)
    logs.configure(limits.log_level)
    sock = socket.socket(fileno=int(fd))
    return Supervisor(limits, sock, dict(os.environ), int(count)).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
