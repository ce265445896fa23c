"""Short versions of the reliability scenarios (`make reliability` runs the long ones and
writes docs/reliability.md): real process, real sockets, loopback, bounded in time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.reliability import STALL_ENV, Service, connection_cap, overload, slow_clients, soak, stall

pytestmark = pytest.mark.e2e


@pytest.fixture
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    svc = Service.start(getattr(request, "param", {}), tmp_path / "service.log")
    try:
        yield svc
    finally:
        svc.stop()


@pytest.mark.parametrize("service", [{"BERTSERVE_MAX_QUEUE_ITEMS": "64"}], indirect=True)
def test_overload_gets_fast_429s_and_recovers(service: Service) -> None:
    """Refusals are fast, accepted requests keep their deadline, and idle latency recovers.

    The deadline (X-Request-Timeout, 5 s here) is the service's promise from the moment it
    reads a request: the 200s are bounded by their x-total-time, not by the caller's wall
    clock. A connection answered a fast 429 is held, unread, until its queue has room
    (service/backpressure.py); a request the caller sends on it meanwhile waits in the socket,
    and what it asked for, its deadline included, is unknown until it is read."""
    result = overload(service, seconds=4)
    assert result.problems() == [], result


@pytest.mark.parametrize("service", [STALL_ENV], indirect=True)
def test_stalled_batch_turns_readiness_503_until_it_returns(service: Service) -> None:
    result = stall(service)
    assert result.problems() == [], result


SLOW = {
    "BERTSERVE_HEADER_TIMEOUT_S": "1",
    "BERTSERVE_BODY_TIMEOUT_S": "1",
    "BERTSERVE_KEEP_ALIVE_TIMEOUT_S": "2",
    "BERTSERVE_MAX_CONNECTIONS": "8",
}


@pytest.mark.parametrize("service", [SLOW], indirect=True)
def test_slow_clients_are_cut_off(service: Service) -> None:
    headers, body, idle = slow_clients(service)
    assert headers.problems("408", 3) == []
    assert body.problems("408", 3) == []
    assert idle.problems("-", 4) == []
    assert idle.seconds >= 1.5  # kept alive, then closed by the keep-alive timeout
    assert connection_cap(service, 8).problems("503", 1) == []


def test_short_soak_has_no_errors_and_flat_memory(service: Service, tmp_path: Path) -> None:
    result = soak(service, 20, work=tmp_path)
    assert result.requests > 500
    assert result.problems() == [], result
