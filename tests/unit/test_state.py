"""Readiness and admission are one decision: AppState.unready_reason."""

from __future__ import annotations

import time

import pytest

from service.errors import Unavailable
from service.metrics import Metrics
from service.settings import Settings
from service.state import AppState, watch_interval
from tests.unit.test_backpressure import Conn


def _state() -> AppState:
    return AppState(Settings(), Metrics())


def test_starting_then_ready_then_draining() -> None:
    state = _state()
    assert "starting" in (state.unready_reason() or "")
    with pytest.raises(Unavailable, match="starting"):
        state.admit(time.monotonic())
    state.mark_ready()
    assert state.unready_reason() is None
    state.admit(time.monotonic())
    before = time.monotonic()
    state.start_draining()
    assert "draining" in (state.unready_reason() or "")
    state.admit(before)  # accepted before the signal: still served
    with pytest.raises(Unavailable, match="draining"):
        state.admit(time.monotonic())


def test_load_failure_and_stall_refuse_too() -> None:
    state = _state()
    state.mark_ready()
    state.stalled = "m: batch running for 31.0s"
    with pytest.raises(Unavailable, match=r"stalled \(m: batch running for 31.0s, over BERTSERVE_STALL_TIMEOUT_S\)"):
        state.admit(time.monotonic())
    state.fail_loading("bad graph")
    assert "could not be loaded: bad graph" in (state.unready_reason() or "")


def test_gauge_follows_the_decision() -> None:
    state = _state()
    gauge = state.metrics.registry.get_sample_value
    state.mark_ready()
    assert gauge("bertserve_ready") == 1
    state.start_draining()
    assert gauge("bertserve_ready") == 0


def test_watchdog_interval_follows_the_stall_timeout() -> None:
    assert watch_interval(30) == 0.5
    assert watch_interval(0.2) == pytest.approx(0.05)
    assert watch_interval(0.001) == 0.01


async def test_quiet_means_few_requests_and_nobody_held() -> None:
    from service.state import QUIET_REQUESTS

    state = _state()
    assert state.quiet()
    state.inflight = QUIET_REQUESTS
    assert state.quiet()
    state.inflight = QUIET_REQUESTS + 1
    assert not state.quiet()
    state.inflight = 1
    held = Conn("held")
    state.held.hold("classify", held)
    assert not state.quiet()
    state.held.release(held)
    assert state.quiet()


async def test_alone_means_quiet_and_one_connection_at_most() -> None:
    from service.state import QUIET_REQUESTS

    state = _state()
    assert state.alone()  # no connection seen (in-process ASGI): as quiet says
    state.connections = 1
    assert state.alone()
    state.connections = 2  # a second client: its next request may be unread, not yet counted
    assert state.quiet() and not state.alone()
    state.connections, state.inflight = 1, QUIET_REQUESTS + 1
    assert not state.alone()
