"""The compose topology without Docker: two `bertserve serve` processes behind a real nginx
from the repository's config. Traffic reaches both; a rolling restart under steady load
loses no request."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.nginx import Nginx
from tests.e2e.procs import DEFAULT_MODELS, Server
from tests.load import SteadyLoad

pytestmark = pytest.mark.e2e

# Two replicas share this machine's cores: one intra-op thread each.
REPLICA_ENV = {"BERTSERVE_INTRA_OP_THREADS": "1", "BERTSERVE_DRAIN_TIMEOUT_S": "15"}


def _served(replica: Server) -> float:
    text = httpx.get(f"{replica.url}/metrics", timeout=5).text
    found = re.findall(
        r'bertserve_requests_total\{model="minilm-sentiment",route="/classify",status="200"\} (\S+)', text
    )
    return float(found[0]) if found else 0.0


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Server]]:
    servers = [Server(DEFAULT_MODELS, env=REPLICA_ENV, log=tmp_path / f"replica{i}.log") for i in range(2)]
    for s in servers:
        s.start()
    try:
        yield [s.wait_ready() for s in servers]
    finally:
        for s in servers:
            s.terminate()


def _classify(client: httpx.Client, worker: int, n: int) -> int:
    return client.post("/classify", json={"inputs": f"film {worker} {n} was fine"}).status_code


def test_nginx_config_is_valid(tmp_path: Path) -> None:
    check = Nginx(tmp_path, [8001, 8002]).check_config()
    assert check.returncode == 0, check.stderr


def test_traffic_reaches_both_replicas(tmp_path: Path, replicas: list[Server]) -> None:
    with Nginx(tmp_path, [r.port for r in replicas]) as lb, httpx.Client(timeout=30) as client:
        for i in range(40):
            r = client.post(f"{lb.url}/classify", json={"inputs": f"sentence {i}"}, headers={"X-Request-ID": f"lb-{i}"})
            assert r.status_code == 200
            assert r.headers["x-request-id"] == f"lb-{i}"  # passed through nginx and echoed
    counts = [_served(r) for r in replicas]
    assert sum(counts) == 40
    assert all(c > 0 for c in counts), counts


def _wait_in_rotation(replica: Server, timeout: float = 30) -> None:
    """nginx's health checks are passive: a restarted replica rejoins once its fail_timeout
    has passed and a request succeeded there. Restarting the next replica before that would
    leave nginx with no live upstream, so a rolling restart waits for it, as k8s does."""
    deadline = time.monotonic() + timeout
    while _served(replica) == 0:
        assert time.monotonic() < deadline, "restarted replica never got traffic back"
        time.sleep(0.2)


def test_rolling_restart_under_load_loses_nothing(tmp_path: Path, replicas: list[Server]) -> None:
    with Nginx(tmp_path, [r.port for r in replicas]) as lb, SteadyLoad(_classify, base_url=lb.url) as load:
        for replica in replicas:
            before = load.total()
            assert replica.terminate() == 0  # drained, clean exit
            replica.start().wait_ready()
            _wait_in_rotation(replica)
            assert load.total() > before  # traffic kept flowing meanwhile
    assert set(load.outcomes) == {200}, load.outcomes
    assert load.outcomes[200] > 50
