"""Several sessions per model and the fast lane, on the real app with real onnxruntime
sessions (the tiny models)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.engine.model import LocalModel
from service.metrics import Metrics
from service.runtime.cpus import available_cpus
from service.runtime.loader import load_repository
from service.runtime.session import CUDA
from service.settings import Settings
from tests.integration.conftest import Client, hold_runtime
from tests.sync import until_async

TEXTS = [f"review number {i} says the film was {'good' if i % 2 else 'bad'}" for i in range(12)]


def _served(c: httpx.AsyncClient, name: str = "tiny-clf"):  # type: ignore[no-untyped-def]
    return c.app.state.bertserve.models[name]  # type: ignore[attr-defined]


async def _logits(c: httpx.AsyncClient) -> np.ndarray:
    r = await c.post("/classify", json={"inputs": TEXTS, "function": "none"})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    return np.array([[p["score"] for p in sorted(row, key=lambda p: p["label"])] for row in rows])


async def test_a_second_instance_serves_while_the_first_is_busy(make_client: Client) -> None:
    async with make_client(instances=2, intra_op_threads=1) as c:
        served = _served(c)
        assert len(served.model.sessions) == 2 and served.model.fast is None  # one thread: nothing to spin
        listed = {m["name"]: m for m in (await c.get("/models")).json()["models"]}
        assert (listed["tiny-clf"]["instances"], listed["tiny-clf"]["intra_op_threads"]) == (2, 1)
        assert listed["tiny-clf"]["fast_lane"] is False
        release = hold_runtime(served)  # instance 0's thread is held
        held = asyncio.ensure_future(c.post("/classify", json={"inputs": "the first request"}))
        await until_async(lambda: served.batcher.busy == 1)
        # The batcher sees instance 0 busy: the next request goes to instance 1 and is answered.
        second = await asyncio.wait_for(c.post("/classify", json={"inputs": "the second request"}), 10)
        assert second.status_code == 200
        assert not held.done()
        release.set()
        assert (await held).status_code == 200


async def test_live_requests_beside_bulk_run_on_the_fast_lane_where_a_session_has_one_thread(
    make_client: Client,
) -> None:
    """One session per CPU, so each has a single thread and the fast lane has them all. While a
    bulk batch holds a session, a lone live request runs at once on the event loop on the fast
    lane; two that come together ride one batch, on the fast lane on a free session's thread.
    Both answer as the plain session does."""
    cpus = available_cpus()
    if cpus < 2:
        pytest.skip("with one CPU there is no fast lane")
    body = {"inputs": TEXTS[0], "function": "none"}
    async with make_client(instances=1, intra_op_threads=1, fast_lane=False, variant="fp32") as c:
        plain = (await c.post("/classify", json=body)).json()["predictions"]
    async with make_client(instances=cpus, intra_op_threads=0, variant="fp32") as c:
        served = _served(c)
        assert served.model.sessions[0].threads == 1 and served.model.fast is not None
        threads = _record_threads(served.model.fast)
        served._quiet = lambda: False  # under load: alone at low load, the bulk batch would take the fast lane
        release = hold_runtime(served)  # instance 0's thread is held: the bulk batch waits there
        served.inline_max_tokens = served.manifest.max_length  # hold_runtime turned inline runs off
        bulk = asyncio.ensure_future(c.post("/classify", json={"inputs": TEXTS[1], "priority": "batch"}))
        await until_async(lambda: served.batcher.busy == 1)
        assert served.batcher.bulk_only() and not served.batcher.beside_bulk(0)

        lone = await asyncio.wait_for(c.post("/classify", json=body), 10)
        assert lone.status_code == 200 and lone.json()["predictions"] == plain
        assert threads == [threading.get_ident()]  # the test runs on the app's event loop
        assert (served.inline_batches, served.fast_batches) == (1, 1)

        together = await asyncio.wait_for(asyncio.gather(*[c.post("/classify", json=body) for _ in range(2)]), 10)
        assert all(r.status_code == 200 and r.json()["predictions"] == plain for r in together)
        assert len(threads) == 2 and threads[1] != threading.get_ident()  # one batch, on a session's thread
        assert (served.inline_batches, served.fast_batches) == (1, 2)
        assert not bulk.done()
        release.set()
        assert (await bulk).status_code == 200
        assert served.fast_batches == 2  # the bulk batch ran on its own session


async def test_every_instance_gives_the_same_answers(make_client: Client) -> None:
    # fp32: dynamic int8 scales its activations per batch, so its numbers follow the batching.
    async with make_client(instances=1, intra_op_threads=1, variant="fp32") as c:
        one = await _logits(c)
    async with make_client(instances=3, intra_op_threads=1, max_batch_size=2, variant="fp32") as c:
        sessions = _served(c).model.sessions
        assert len(sessions) == 3
        # Concurrent requests spread over the three sessions; each answer matches.
        many = await asyncio.gather(*[_logits(c) for _ in range(6)])
    for logits in many:
        np.testing.assert_allclose(logits, one, atol=1e-5)


async def test_a_stall_names_the_instance_and_readiness_comes_back(make_client: Client) -> None:
    async with make_client(instances=2, intra_op_threads=1, stall_timeout_s=0.2) as c:
        served = _served(c)
        release = hold_runtime(served)
        held = asyncio.ensure_future(c.post("/classify", json={"inputs": "stuck behind a held thread"}))

        async def unready() -> httpx.Response | None:
            r = await c.get("/health/ready")
            return r if r.status_code != 200 else None

        ready = await until_async(unready, interval=0.02, what="the stall to be seen")
        assert ready.status_code == 503
        assert "tiny-clf (instance 0)" in ready.text and "instance 1" not in ready.text
        release.set()
        assert (await held).status_code == 200
        await until_async(lambda: c.app.state.bertserve.stalled is None)  # type: ignore[attr-defined]
        assert (await c.get("/health/ready")).status_code == 200


async def test_the_fast_lane_serves_low_load_and_stays_out_of_a_queue(make_client: Client) -> None:
    async with make_client(instances=1, intra_op_threads=1, fast_lane=False, variant="fp32") as c:
        plain = await _logits(c)
        assert _served(c).model.fast is None
    async with make_client(instances=1, intra_op_threads=2, variant="fp32") as c:  # the fast lane is on by default
        served = _served(c)
        assert served.model.fast is not None and len(served.model.sessions) == 1
        assert {m["name"]: m["fast_lane"] for m in (await c.get("/models")).json()["models"]}["tiny-clf"] is True
        for _ in range(3):  # one at a time: each batch leaves the queue empty
            np.testing.assert_allclose(await _logits(c), plain, atol=1e-5)
        assert served.fast_batches == 3
        # A queue: hold the runtime while 12 requests wait; at 8 items a batch, a batch that
        # leaves items queued runs on the plain session.
        release = hold_runtime(served)
        pending = [asyncio.ensure_future(c.post("/classify", json={"inputs": t})) for t in TEXTS]
        await until_async(lambda: served.batcher.queued + sum(map(len, served.batcher._running.values())) == len(TEXTS))
        before = served.fast_batches
        runs_before = served.batcher._batches_run
        release.set()
        answers = await asyncio.gather(*pending)
        assert all(r.status_code == 200 for r in answers)
        batches = served.batcher._batches_run - runs_before
        fast = served.fast_batches - before
        assert batches >= 2 and fast < batches, (batches, fast)


def _record_threads(session) -> list[int]:  # type: ignore[no-untyped-def]
    """The ids of the threads that run `session` from now on."""
    threads: list[int] = []
    original = session.run

    def recorded(rows):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        return original(rows)

    session.run = recorded
    return threads


async def test_a_short_fast_lane_batch_runs_on_the_event_loop_and_a_long_one_on_its_thread(
    make_client: Client,
) -> None:
    async with make_client(instances=1, intra_op_threads=1, fast_lane=False, variant="fp32") as c:
        plain = await _logits(c)
    async with make_client(instances=1, intra_op_threads=2, variant="fp32") as c:
        served = _served(c)
        # Timed at start-up: the tiny model's rows take far less than the 20 ms budget.
        assert served.inline_max_tokens >= served.manifest.max_length
        listed = {m["name"]: m for m in (await c.get("/models")).json()["models"]}
        assert listed["tiny-clf"]["inline_max_tokens"] == served.inline_max_tokens
        threads = _record_threads(served.model.fast)
        loop_thread = threading.get_ident()  # the test runs on the app's event loop
        np.testing.assert_allclose(await _logits(c), plain, atol=1e-5)
        assert threads == [loop_thread] and served.inline_batches == 1 and served.fast_batches == 1
        # Over the limit: the same fast lane, on the session's own thread.
        served.inline_max_tokens = 1
        np.testing.assert_allclose(await _logits(c), plain, atol=1e-5)
        assert len(threads) == 2 and threads[1] != loop_thread
        assert served.inline_batches == 1 and served.fast_batches == 2


async def test_a_single_short_input_runs_at_once_without_the_queue(make_client: Client) -> None:
    async with make_client(instances=1, intra_op_threads=2) as c:
        served = _served(c)
        threads = _record_threads(served.model.fast)
        runs_before = served.batcher._batches_run
        r = await c.post("/classify", json={"inputs": "a single short review"})
        assert r.status_code == 200 and r.headers["x-queue-time"] == "0.000"
        assert threads == [threading.get_ident()] and served.inline_batches == 1
        assert served.batcher._batches_run == runs_before + 1  # counted as a batch of one
        metrics = (await c.get("/metrics")).text
        assert 'bertserve_batch_size_count{model="tiny-clf"} 1.0' in metrics
        # A failed run there is not the answer: the input queues, and runs again.
        original = served.model.fast.run
        failures = iter([RuntimeError("once")])

        def fails_once(rows):  # type: ignore[no-untyped-def]
            for error in failures:
                raise error
            return original(rows)

        served.model.fast.run = fails_once
        again = await c.post("/classify", json={"inputs": "a single short review"})
        assert again.status_code == 200 and again.json()["predictions"] == r.json()["predictions"]
        assert served.batcher._batches_run == runs_before + 2


async def test_no_batch_runs_on_the_event_loop_with_the_budget_at_zero(make_client: Client) -> None:
    async with make_client(instances=1, intra_op_threads=2, inline_max_ms=0) as c:
        served = _served(c)
        assert served.model.fast is not None and served.inline_max_tokens == 0
        threads = _record_threads(served.model.fast)
        assert (await c.post("/classify", json={"inputs": "short"})).status_code == 200
        assert threads and threading.get_ident() not in threads and served.inline_batches == 0


def test_warm_up_runs_every_session_once_at_the_longest_input_and_the_largest_batch_on_cuda(tiny_repo: Path) -> None:
    settings = Settings(models=tiny_repo, instances=2, intra_op_threads=1, max_batch_size=4, max_batch_tokens=64)
    model = next(m for m in load_repository(settings) if m.name == "tiny-clf")
    runs: list[tuple[int, list[tuple[int, ...]]]] = []
    for index, session in enumerate(model.every_session):
        original = session.run

        def recorded(rows, index=index, original=original):  # type: ignore[no-untyped-def]
            runs.append((index, [r.shape for r in rows]))
            return original(rows)

        session.run = recorded  # type: ignore[method-assign]
    # The second session stands in for one on CUDA (the branch is chosen by its provider).
    model.sessions[1].provider = CUDA
    with ThreadPoolExecutor(1) as pool:
        served = LocalModel(model, settings, Metrics(), pool)
        served.warm_up()
    longest = [(model.manifest.max_length,)]
    width = min(model.manifest.max_length, 64 // 4)
    assert runs == [(0, longest), (1, [(width,)] * 4), (1, longest)]
    model.close()
