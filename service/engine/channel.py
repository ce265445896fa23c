"""The request channel between a front end and the engine process: one Unix stream socket per
front end, read and written by each side's own event loop, messages framed by their length.

Why not ZeroMQ here, as vLLM does: a ZeroMQ socket hands each message to an I/O thread of
its process, and that thread to the receiving process's I/O thread, which wakes the event
loop. On a GPU machine the cores are many and that costs nothing; where the front ends and
the engine share a few cores, four thread wake-ups a request and back each cost a context
switch. A stream socket the event loop reads itself costs one wake-up each way, and the
replies a batch finishes together leave in one write (`Channel.send` gathers what one turn
of the loop sends). The engine's Status, a few times a second, stays on ZeroMQ's PUB socket.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

_LENGTH = struct.Struct("<I")
MAX_MESSAGE = 1 << 30  # a frame longer than this is a broken peer, not a message


class Channel(asyncio.Protocol):
    """One end of a connection: `send(payload)` frames a message, `on_message(payload)` hears
    each one received whole, `on_lost(exc)` hears the connection's end."""

    def __init__(
        self, on_message: Callable[[Channel, memoryview], None], on_lost: Callable[[Channel], None] | None = None
    ) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        at = 0
        end = len(buffer)
        view = memoryview(buffer)
        try:
            while end - at >= _LENGTH.size:
                (size,) = _LENGTH.unpack_from(buffer, at)
                if size > MAX_MESSAGE:
                    raise ValueError(f"a frame of {size} bytes")
                if end - at - _LENGTH.size < size:
                    break
                start = at + _LENGTH.size
                # A copy: the buffer is reused for the next bytes, and a message's arrays
                # (numpy views of it) may outlive this call.
                self._on_message(self, memoryview(bytes(view[start : start + size])))
                at = start + size
        finally:
            view.release()
        if at:
            del buffer[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        if self._on_lost is not None:
            self._on_lost(self)

    def send(self, payload: bytes) -> None:
        """Queue a message; what one turn of the loop sends leaves in one write."""
        if self.closed or self._transport is None:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(_LENGTH.pack(len(payload)))
        self._out.append(payload)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self.closed:
            self._transport.write(b"".join(out))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
