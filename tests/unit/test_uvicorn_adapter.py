"""What service/uvicorn_adapter.py assumes of uvicorn: this test fails by name when a new
uvicorn release breaks one of them."""

from __future__ import annotations

from service.uvicorn_adapter import GuardedHttpProtocol, assumptions, protocol_class


def test_uvicorn_still_offers_what_the_adapter_leans_on() -> None:
    assert assumptions() == []


def test_protocol_class_carries_the_limits() -> None:
    cls = protocol_class(2.5, 7)
    assert issubclass(cls, GuardedHttpProtocol)
    assert (cls.header_timeout_s, cls.max_connections) == (2.5, 7)
