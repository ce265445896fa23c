"""The Docker engine and the compose stack, driven through their command-line clients."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# Images built by the README's air-gapped recipe.
BASE_IMAGE = "bertserve-base:bookworm"
NGINX_IMAGE = "bertserve-nginx:bookworm"
PROMETHEUS_IMAGE = "bertserve-prometheus:bookworm"
RUNTIME_IMAGE = "bertserve:latest"

# The variables that recipe sets for docker-compose.yml: the images, the models' source, and the
# upstream line for Debian's nginx (1.22: no `resolve`). Nothing else of the file is overridden.
STACK_ENV = {
    "PYTHON_IMAGE": BASE_IMAGE,
    "MODELS_FROM": "context",
    "NGINX_IMAGE": NGINX_IMAGE,
    "PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
    "NGINX_UPSTREAMS": "server bertserve:8000 max_fails=1 fail_timeout=2s;",
}
# Its own project name, so the test never touches a stack a user runs from this checkout.
PROJECT = "bertserve-test"
# Every container the test starts outside compose carries this label.
TEST_LABEL = "org.bertserve.test=1"
NGINX_URL = "http://127.0.0.1:8080"
PROMETHEUS_URL = "http://127.0.0.1:9090"


class DockerError(RuntimeError):
    pass


def run(args: list[str], timeout: float = 120, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise DockerError(f"{' '.join(args[:6])} ... exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


def run_logged(args: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> float:
    """Run a long command (a build) with its output in a file; seconds taken. On failure the
    error carries the log's tail."""
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise DockerError(f"{' '.join(args)} exited {proc.returncode}; log {log}:\n{log.read_text()[-4000:]}")
    return time.monotonic() - started


@cache
def compose_command() -> tuple[str, ...]:
    """`docker compose` (Compose v2) where the plugin is there, else `docker-compose`: Debian 12
    ships Compose v1 only. Both read the same file."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    raise DockerError("neither `docker compose` nor `docker-compose` is installed")


def compose_env() -> dict[str, str]:
    return {**os.environ, **STACK_ENV, "COMPOSE_PROJECT_NAME": PROJECT}


def compose(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([*compose_command(), *args], timeout=timeout, check=check, cwd=REPO, env=compose_env())


def containers(service: str | None = None, all_states: bool = True) -> list[str]:
    """Names of the project's containers (of one service), sorted."""
    args = ["docker", "ps", "--format", "{{.Names}}", "--filter", f"label=com.docker.compose.project={PROJECT}"]
    if service:
        args += ["--filter", f"label=com.docker.compose.service={service}"]
    if all_states:
        args.append("--all")
    return sorted(run(args).stdout.split())


def inspect(name: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(run(["docker", "inspect", name]).stdout)
    return data[0]


def health(name: str) -> str:
    state = inspect(name)["State"]
    return str(state.get("Health", {}).get("Status", "none"))


def timestamp(stamp: str) -> float:
    """Docker's RFC 3339 UTC times (nanoseconds) as epoch seconds."""
    head, _, rest = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00").timestamp()


def started_at(name: str) -> float:
    return timestamp(inspect(name)["State"]["StartedAt"])


def wait_healthy(names: list[str], timeout: float = 180) -> float:
    """Wait until every container reports healthy through its image's HEALTHCHECK; seconds waited."""
    started = time.monotonic()
    while True:
        states = {name: health(name) for name in names}
        if all(s == "healthy" for s in states.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not healthy after {timeout} s: {states}")
        time.sleep(0.5)


def exec_python(name: str, code: str, timeout: float = 30) -> str:
    return run(["docker", "exec", name, "python", "-c", code], timeout=timeout).stdout


_METRICS = (
    "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/metrics', timeout=5).read().decode())"
)


def metrics(name: str) -> str:
    """A replica's /metrics, read from inside its container (replicas publish no port)."""
    return exec_python(name, _METRICS)


def served(name: str, route: str = "/classify") -> float:
    """Requests the replica answered 200 on a route since it started."""
    pattern = rf'bertserve_requests_total\{{[^}}]*route="{re.escape(route)}"[^}}]*status="200"[^}}]*\}} (\S+)'
    return sum(float(v) for v in re.findall(pattern, metrics(name)))


def inflight(name: str) -> float:
    found = re.search(r"^bertserve_inflight_requests (\S+)", metrics(name), re.M)
    return float(found.group(1)) if found else 0.0


def logs(name: str) -> list[dict[str, Any]]:
    """The container's JSON log records (other lines are skipped)."""
    proc = run(["docker", "logs", name], check=False)
    records = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def image_size(image: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).stdout)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def diagnose() -> str:
    """State, health checks and last log lines of every container of the project."""
    lines = []
    for name in containers():
        state = inspect(name)["State"]
        checks = state.get("Health", {}).get("Log", [])[-3:]
        lines.append(
            f"{name}: {state['Status']} exit {state['ExitCode']} restarts {inspect(name)['RestartCount']}"
            f" health {state.get('Health', {}).get('Status', 'none')}"
            f" last checks {[(c['ExitCode'], c['Output'][-200:]) for c in checks]}"
        )
        tail = run(["docker", "logs", "--tail", "15", name], check=False)
        lines += [f"  {line[:300]}" for line in (tail.stdout + tail.stderr).splitlines()]
    return "\n".join(lines)


def leftovers() -> list[str]:
    """Containers and networks of the project, and labelled test containers, still present."""
    found = [f"container {c}" for c in containers()]
    labelled = run(["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", f"label={TEST_LABEL}"]).stdout.split()
    found += [f"container {c}" for c in labelled]
    networks = run(
        ["docker", "network", "ls", "--format", "{{.Name}}", "--filter", f"label=com.docker.compose.project={PROJECT}"]
    ).stdout.split()
    found += [f"network {n}" for n in networks]
    return found


def remove_everything() -> None:
    """Remove the test's containers, the compose project and its networks, whatever state they are in."""
    labelled = run(["docker", "ps", "-aq", "--filter", f"label={TEST_LABEL}"], check=False).stdout.split()
    if labelled:
        run(["docker", "rm", "-f", *labelled], check=False)
    compose("down", "--volumes", "--remove-orphans", "--timeout", "5", timeout=180, check=False)
    # Whatever compose left (a container it no longer knows): by label.
    rest = run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"], check=False
    ).stdout.split()
    if rest:
        run(["docker", "rm", "-f", *rest], check=False)
    networks = run(
        ["docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"], check=False
    ).stdout.split()
    if networks:
        run(["docker", "network", "rm", *networks], check=False)
