"""The HTTP protocol, hardened against slow and greedy clients.

uvicorn's keep-alive timeout covers idle connections between requests, but nothing bounds
the time a client takes to send a request's headers (slowloris) or how many connections it
opens. This subclass adds both: a header timeout, armed when a connection opens and when a
request begins, disarmed once the headers are in; and a cap on open connections, beyond
which a new connection gets a 503 in the service's error envelope and is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.api.responses import error_body


def _response(status: int, reason: str, type_: str, message: str) -> bytes:
    body = orjson.dumps(error_body(type_, message))
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


TOO_MANY = _response(503, "Service Unavailable", "unavailable", "too many open connections: retry later")
TOO_SLOW = _response(408, "Request Timeout", "request_timeout", "request headers not received in time")


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout_s: float = 10.0
    max_connections: int = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(TOO_MANY)
            transport.close()
            return
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(TOO_SLOW)
            self.transport.close()


def protocol_class(header_timeout_s: float, max_connections: int) -> type[GuardedHttpProtocol]:
    """A protocol class carrying this server's limits (uvicorn instantiates it per connection)."""
    return type(
        "ConfiguredHttpProtocol",
        (GuardedHttpProtocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )
