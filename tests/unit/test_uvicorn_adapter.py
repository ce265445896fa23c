"""What service/uvicorn_adapter.py assumes of uvicorn: this test fails by name when a new
uvicorn release breaks one of them."""

from __future__ import annotations

from service.backpressure import HeldConnections
from service.uvicorn_adapter import GuardedHttpProtocol, assumptions, protocol_class


def test_uvicorn_still_offers_what_the_adapter_leans_on() -> None:
    assert assumptions() == []


def test_protocol_class_carries_the_limits() -> None:
    held = HeldConnections(lambda task: 0, lambda: True, 30.0)
    cls = protocol_class(2.5, 7, held)
    assert issubclass(cls, GuardedHttpProtocol)
    assert (cls.header_timeout_s, cls.max_connections, cls.held) == (2.5, 7, held)


def test_the_protocol_tells_the_state_how_many_connections_are_open() -> None:
    from types import SimpleNamespace

    state = SimpleNamespace(connections=0)
    cls = protocol_class(2.5, 7, HeldConnections(lambda task: 0, lambda: True, 30.0), state)  # type: ignore[arg-type]
    assert cls.state is state
    # uvicorn's set of open connections, shared by every protocol of the server
    GuardedHttpProtocol._count(SimpleNamespace(state=state, connections={"a", "b", "c"}))  # type: ignore[arg-type]
    assert state.connections == 3
