"""The Docker tests: the images built without a registry, the project's docker-compose.yml run
with two replicas, nginx and Prometheus. They need a Docker engine and run only under
`make test-docker` (TEST_DOCKER=1), which starts one; plain `make test` does not collect them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.docker import dockerctl as d

if os.environ.get("TEST_DOCKER") != "1":
    collect_ignore_glob = ["test_*.py"]

# Figures measured on the way, printed at the end of the run.
FIGURES: dict[str, Any] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("docker figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")


@dataclass
class Images:
    log: Path


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The README's air-gapped recipe: a base image from Debian's packages (kept while the engine
    has it), nginx and Prometheus on it, and the runtime image with the models of the context."""
    built = sorted(p.parent.name for p in (d.REPO / "models").glob("*/manifest.json"))
    assert built, "no built model under models/: run make models first"
    log = tmp_path_factory.mktemp("docker") / "build.log"
    FIGURES["build log"] = str(log)
    # Each build labels its images: the ones a rebuild has since untagged (code changed) are
    # removed first, so repeated runs do not fill the disk; the tagged ones stay, as cache.
    d.run(["docker", "image", "prune", "-f", "--filter", f"label={d.TEST_LABEL}"], check=False, timeout=300)
    FIGURES["base image"] = f"{d.run_logged(['deploy/docker/base-image.sh'], log, timeout=900):.0f} s"
    for name, image in (("nginx", d.NGINX_IMAGE), ("prometheus", d.PROMETHEUS_IMAGE)):
        args = ["docker", "build", "--label", d.TEST_LABEL, "-f", f"deploy/docker/{name}.Dockerfile", "-t", image]
        args += ["deploy/docker"]
        FIGURES[f"{name} image"] = f"{d.run_logged(args, log, timeout=600):.0f} s"
    args = [
        "docker",
        "build",
        "--label",
        d.TEST_LABEL,
        "--target",
        "runtime",
        "--build-arg",
        f"PYTHON_IMAGE={d.BASE_IMAGE}",
    ]
    args += ["--build-arg", "MODELS_FROM=context", "-t", "bertserve", "."]
    FIGURES["runtime image"] = f"{d.run_logged(args, log, timeout=900):.0f} s, models {', '.join(built)}"
    FIGURES["runtime image size"] = f"{d.image_size(d.RUNTIME_IMAGE) / 1e6:.0f} MB"
    return Images(log)


@dataclass
class Stack:
    replicas: list[str]
    nginx: str
    prometheus: str
    network: str


def _wait_nginx(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{d.NGINX_URL}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("nginx did not answer /health/ready")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def stack(images: Images) -> Iterator[Stack]:
    """`docker compose up -d --build` with the recipe's variables; everything is removed at the
    end, whatever happened, and the teardown fails if anything of it is left."""
    d.remove_everything()  # what an interrupted earlier run may have left
    busy = [p for p in (8080, 9090) if not d.port_free(p)]
    assert not busy, f"ports {busy} on 127.0.0.1 are taken: the compose file publishes 8080 and 9090"
    try:
        started, wall = time.monotonic(), time.time()
        try:
            d.run_logged([*d.compose_command(), "up", "-d", "--build"], images.log, timeout=900, env=d.compose_env())
        except d.DockerError as exc:
            raise d.DockerError(f"{exc}\n{d.diagnose()}") from exc
        up_returned = time.monotonic() - started
        replicas = d.containers("bertserve")
        d.wait_healthy(replicas)
        _wait_nginx()
        first_start = min(d.started_at(name) for name in replicas) - wall
        FIGURES["compose up -> healthy"] = (
            f"{time.monotonic() - started:.1f} s: replicas started after {first_start:.1f} s (context upload and"
            f" the cached build), up returned after {up_returned:.1f} s, nginx answering right after"
        )
        nginx, prometheus = d.containers("nginx")[0], d.containers("prometheus")[0]
        network = next(iter(d.inspect(replicas[0])["NetworkSettings"]["Networks"]))
        yield Stack(replicas, nginx, prometheus, network)
    finally:
        d.remove_everything()
        left = d.leftovers()
        assert not left, f"left behind: {left}"
        FIGURES["left behind after teardown"] = "nothing"
