"""Two front-end processes around one engine process (BERTSERVE_API_SERVERS=2), over real
sockets: the answers equal one process's byte for byte; admission, deadlines, cancellation,
drain, reload and metrics hold across processes; a killed engine turns readiness 503 at once
and comes back; a killed front end leaves the other serving and is restarted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import DEFAULT_MODELS, Server
from tests.e2e.test_drain import _until_status
from tests.load import SteadyLoad
from tests.sync import until

pytestmark = pytest.mark.e2e

# One session per model, one thread, no fast lane, int8: which session runs a row, with how
# many threads, and the variant `auto` times at load all change the last bits of a float; so
# that the comparison with one process sees the transport alone, both run the same way.
SAME_RUNS = {
    "BERTSERVE_INSTANCES": "1",
    "BERTSERVE_INTRA_OP_THREADS": "1",
    "BERTSERVE_FAST_LANE": "false",
    "BERTSERVE_VARIANT": "int8",
}
TWO = {"BERTSERVE_API_SERVERS": "2"}
REVIEW = "a moving, beautifully acted film with a score that stays with you long after the credits"
CALLS = [
    ("/classify", {"inputs": [REVIEW, "tedious and flat"]}),
    ("/classify", {"inputs": REVIEW, "top_k": 1, "function": "sigmoid"}),
    ("/embed", {"inputs": [REVIEW, "tedious and flat"]}),
    ("/embed", {"inputs": REVIEW, "encoding_format": "base64", "dimensions": 64}),
    ("/embed", {"inputs": [REVIEW, "tedious and flat"], "chunk_tokens": 6}),  # token states over IPC
    ("/v1/embeddings", {"input": [REVIEW, "tedious"], "model": "all-minilm-l6-v2"}),
    ("/rerank", {"query": "a film worth seeing", "texts": [REVIEW, "tedious and flat", "a cat"]}),
    ("/v2/rerank", {"model": "all-minilm-l6-v2", "query": "a good film", "documents": [REVIEW, "a cat"]}),
    ("/classify/tokens", {"inputs": ["Ada Lovelace was born in London.", "Paris is in France."]}),
    ("/tokenize", {"inputs": [REVIEW]}),
    ("/classify", {"inputs": []}),  # a 422 is an answer too
]


def processes(supervisor: int) -> dict[str, list[int]]:
    """The supervisor's children by role: the engine and the front ends."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    roles: dict[str, list[int]] = {"engine": [], "front": []}
    for pid in map(int, children):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        roles["engine" if b"service.engine_process" in cmdline else "front"].append(pid)
    return roles


@pytest.fixture(scope="module")
def two() -> Iterator[Server]:
    with Server(DEFAULT_MODELS, env={**TWO, **SAME_RUNS}) as server:
        yield server


def test_answers_equal_one_process_byte_for_byte(two: Server) -> None:
    with Server(DEFAULT_MODELS, env={"BERTSERVE_API_SERVERS": "1", **SAME_RUNS}) as one:
        for path, body in CALLS:
            # New connections each time: the kernel hands them to either front end.
            for _ in range(3):
                a = httpx.post(f"{one.url}{path}", json=body, timeout=30)
                b = httpx.post(f"{two.url}{path}", json=body, timeout=30)
                assert (a.status_code, _without_id(a)) == (b.status_code, _without_id(b)), path
                assert b.headers["x-request-id"] and float(b.headers["x-inference-time"]) >= 0


def _without_id(r: httpx.Response) -> bytes:
    """The body, its response id (Cohere's `id`, new each time) blanked, all else as sent."""
    found = r.json().get("id") if r.content.startswith(b"{") else None
    return r.content.replace(f'"id":"{found}"'.encode(), b'"id":""') if isinstance(found, str) else r.content


def test_both_front_ends_serve_and_the_engine_holds_the_weights(two: Server) -> None:
    assert two.proc is not None
    roles = processes(two.proc.pid)
    assert len(roles["engine"]) == 1 and len(roles["front"]) == 2, roles
    for _ in range(40):
        with httpx.Client() as client:  # a fresh connection
            r = client.post(f"{two.url}/classify", json={"inputs": REVIEW})
            assert r.status_code == 200, r.text
    text = httpx.get(f"{two.url}/metrics").text
    # The engine's batch metrics and both front ends' request counters, in one scrape.
    assert _sample(text, 'bertserve_batch_size_count{model="minilm-sentiment"}') >= 40
    assert _sample(text, 'bertserve_requests_total{model="minilm-sentiment",route="/classify",status="200"}') >= 40


def _head(path: str, length: int) -> str:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in the metrics")


def test_metrics_sum_requests_across_front_ends(two: Server) -> None:
    """Every request is counted once, whichever front end took it and whichever answers the
    scrape."""
    series = 'bertserve_requests_total{model="all-minilm-l6-v2",route="/embed",status="200"}'
    text = _scrape(two)
    before = _sample(text, series) if series in text else 0.0
    for _ in range(30):
        assert httpx.post(f"{two.url}/embed", json={"inputs": "counted once"}).status_code == 200
    for _ in range(4):  # any front end's scrape sees the whole service
        assert _sample(httpx.get(f"{two.url}/metrics").text, series) == before + 30


def _scrape(server: Server) -> str:
    return httpx.get(f"{server.url}/metrics").text


def test_admission_across_processes() -> None:
    env = {**TWO, "BERTSERVE_MAX_QUEUE_ITEMS": "16", "BERTSERVE_MAX_INPUTS": "64"}
    with Server(DEFAULT_MODELS, env=env) as server:
        too_big = httpx.post(f"{server.url}/classify", json={"inputs": ["x"] * 17})
        assert too_big.status_code == 422, too_big.text
        assert "BERTSERVE_MAX_QUEUE_ITEMS" in too_big.json()["error"]["message"]
        # Many 16-item requests at once: some wait their turn, the rest are refused at once.
        statuses: list[int] = []
        with SteadyLoad(_sixteen(statuses), threads=8, base_url=server.url):
            until(lambda: 429 in statuses and 200 in statuses, timeout=60, what="a 429 beside the 200s")
        assert set(statuses) <= {200, 429}, statuses


def _sixteen(statuses: list[int]):  # type: ignore[no-untyped-def]
    def send(client: httpx.Client, worker: int, n: int) -> str:
        r = client.post("/classify", json={"inputs": [f"{REVIEW} {worker} {n} {i}" for i in range(16)]})
        if r.status_code == 429:
            assert r.json()["error"]["type"] == "overloaded" and r.headers["retry-after"]
        statuses.append(r.status_code)
        return str(r.status_code)

    return send


def test_a_deadline_travels_to_the_engine(two: Server) -> None:
    long_texts = [f"{REVIEW} " * 12 + str(i) for i in range(64)]
    r = httpx.post(f"{two.url}/embed", json={"inputs": long_texts}, headers={"X-Request-Timeout": "0.001"}, timeout=30)
    assert r.status_code == 504, r.text
    assert r.json()["error"]["type"] == "timeout"


def test_the_priority_travels_to_the_engine(two: Server) -> None:
    series = 'bertserve_queue_wait_seconds_count{model="minilm-sentiment",priority="batch"}'
    text = _scrape(two)
    before = _sample(text, series) if series in text else 0.0
    r = httpx.post(f"{two.url}/classify", json={"inputs": ["a", "b"]}, headers={"X-Priority": "batch"}, timeout=30)
    assert r.status_code == 200, r.text
    assert _sample(_scrape(two), series) == before + 2  # both items queued at batch priority


def test_a_client_that_leaves_has_its_items_dropped_in_the_engine(two: Server) -> None:
    a_leaving_client_has_its_items_dropped(two)


def a_leaving_client_has_its_items_dropped(server: Server) -> None:
    """Shared with the single process's test (tests/e2e/test_serve.py)."""
    series = 'bertserve_rejections_total{model="all-minilm-l6-v2",priority="interactive",reason="cancelled"}'
    text = _scrape(server)
    before = _sample(text, series) if series in text else 0.0
    long_texts = [f"{REVIEW} " * 12 + str(i) for i in range(64)]  # BERTSERVE_MAX_INPUTS
    busy = json.dumps({"inputs": long_texts}).encode()
    head = _head("/embed", len(busy))
    # A long request ahead: the second waits behind it, and its client leaves meanwhile (its
    # items are dropped when they reach the head of the queue). One session takes 32 of the
    # first's 64 items at once, so a queue over 32 holds the second's.
    ahead = [socket.create_connection(("127.0.0.1", server.port))]
    for conn in ahead:
        conn.sendall(head.encode() + busy)
    leaving = socket.create_connection(("127.0.0.1", server.port))
    leaving.sendall(head.encode() + busy)
    until(
        lambda: _sample(_scrape(server), 'bertserve_queue_depth{model="all-minilm-l6-v2",priority="interactive"}') > 32,
        timeout=60,
        what="the second request's items queued",
    )
    leaving.close()
    until(
        lambda: series in (text := _scrape(server)) and _sample(text, series) > before,
        timeout=120,
        what="the departed client's items dropped",
    )
    for conn in ahead:
        conn.settimeout(60)
        assert conn.recv(12).startswith(b"HTTP/1.1 200")
        conn.close()


def test_drain_answers_what_each_front_end_accepted() -> None:
    body = json.dumps({"inputs": ["a review that arrives slowly", "and a second one"]}).encode()
    server = Server(DEFAULT_MODELS, env={**TWO, "BERTSERVE_DRAIN_TIMEOUT_S": "20"})
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=30) as held:
        head = _head("/classify", len(body))
        held.sendall(head.encode() + body[:10])
        until(
            lambda: _sample(_scrape(server), "bertserve_inflight_requests") >= 2,
            timeout=10,
            what="the held request in the app",
        )
        assert server.proc is not None
        server.proc.terminate()
        until(lambda: httpx.get(f"{server.url}/health/ready").status_code == 503, timeout=5, what="draining")
        assert server.proc.poll() is None, "exited with a request in flight"
        held.sendall(body[10:])
        answer = held.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert server.proc.wait(30) == 0


def test_reload_from_any_front_end_swaps_the_engine_for_all(tmp_path: Path) -> None:
    from tests.e2e.test_reload import CLASSIFIER, EMBEDDER, _link_model, _new_version, _swap_dir

    repo = tmp_path / "models"
    for name in (CLASSIFIER, EMBEDDER):
        _link_model(DEFAULT_MODELS / name, repo / name)
    with Server(repo, env={**TWO, "BERTSERVE_VARIANT": "int8"}) as server:
        assert server.proc is not None
        _until_every_front_end_ready(server)
        before = _sha(server, CLASSIFIER)

        def send(client: httpx.Client, worker: int, n: int) -> str:
            path = "/classify" if worker % 2 else "/embed"
            r = client.post(path, json={"inputs": f"{REVIEW} {n}"})
            # The body of an unexpected answer goes into the outcome: the failure then says why.
            return f"{path} {r.status_code}" + ("" if r.status_code in (200, 404) else f" {r.text}")

        with SteadyLoad(send, threads=4, base_url=server.url) as load:
            until(lambda: load.total() >= 40, timeout=60, what="the load to settle")
            _swap_dir(_new_version(repo / CLASSIFIER, tmp_path / "staging"), repo / CLASSIFIER)
            r = httpx.post(f"{server.url}/admin/reload", timeout=120)
            assert r.status_code == 200 and r.json()["replaced"] == [CLASSIFIER], r.text
            after = _sha(server, CLASSIFIER)
            assert after != before
            until(
                lambda: all(_sha(server, CLASSIFIER) == after for _ in range(10)),
                timeout=5,
                what="every front end on the new table",
            )
            # SIGHUP to the supervisor: the engine reloads (removing the embedder).
            shutil.rmtree(repo / EMBEDDER)
            server.proc.send_signal(signal.SIGHUP)
            until(lambda: all(EMBEDDER not in _models(server) for _ in range(10)), timeout=60, what="SIGHUP to unload")
            total = load.total()
            until(lambda: load.total() >= total + 20, timeout=60, what="load after the reloads")
        bad = {k: v for k, v in load.outcomes.items() if not str(k).endswith(" 200")}
        # /embed requests after the embedder was removed get a 404: the only failures allowed.
        assert set(bad) <= {"/embed 404"}, load.outcomes


def _until_every_front_end_ready(server: Server) -> None:
    """The Server fixture waits for one front end's readiness; each takes in the engine's
    Status on its own, so wait until ten fresh connections in a row find a ready one."""

    until(lambda: _every_front_end_ready(server), timeout=30, what="every front end ready")


def _every_front_end_ready(server: Server) -> bool:
    return all(
        httpx.get(f"{server.url}/health/ready", headers={"connection": "close"}).status_code == 200 for _ in range(10)
    )


def _models(server: Server) -> dict[str, dict[str, object]]:
    return {m["name"]: m for m in httpx.get(f"{server.url}/models").json()["models"]}


def _sha(server: Server, name: str) -> str:
    return str(_models(server)[name]["sha256"])


def test_a_killed_engine_turns_readiness_503_and_comes_back(two: Server) -> None:
    assert two.proc is not None
    (engine,) = processes(two.proc.pid)["engine"]

    def send(client: httpx.Client, worker: int, n: int) -> str:
        return str(client.post("/classify", json={"inputs": f"{REVIEW} {worker} {n}"}).status_code)

    with SteadyLoad(send, threads=4, base_url=two.url, timeout_s=30) as load:
        until(lambda: load.total() >= 20, timeout=60, what="the load to settle")
        killed_at = time.monotonic()
        os.kill(engine, signal.SIGKILL)
        ready = _until_status(f"{two.url}/health/ready", 503)
        assert time.monotonic() - killed_at < 2.0
        assert "engine" in ready.json()["error"]["message"], ready.text
        until(lambda: processes(two.proc.pid)["engine"] not in ([], [engine]), timeout=60, what="a new engine")  # type: ignore[union-attr]
        # Not one ready answer: it would come from whichever front end took the connection.
        until(lambda: _every_front_end_ready(two), timeout=120, what="the engine restarted")
        total = load.total()
        until(lambda: load.total() >= total + 20, timeout=60, what="served again")
    # Every request was answered: 200, or 503 while the engine was down; none hung or broke.
    assert set(load.outcomes) <= {"200", "503"}, load.outcomes
    assert processes(two.proc.pid)["engine"] != [engine]


def test_a_killed_front_end_leaves_the_other_serving(two: Server) -> None:
    assert two.proc is not None
    victim = processes(two.proc.pid)["front"][0]
    os.kill(victim, signal.SIGKILL)
    for _ in range(20):
        r = httpx.post(f"{two.url}/classify", json={"inputs": REVIEW})
        assert r.status_code == 200, r.text
    until(
        lambda: len(processes(two.proc.pid)["front"]) == 2 and victim not in processes(two.proc.pid)["front"],  # type: ignore[union-attr]
        timeout=30,
        what="the front end restarted",
    )
