"""The front end <-> engine request channel (service/engine/channel.py): length-framed
messages over a real Unix stream socket, whole whatever the reads' sizes, and what one turn
of the loop sends leaving in one write."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from service.engine import wire
from service.engine.channel import _LENGTH, Channel


class Heard:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.lost = asyncio.Event()
        self.arrived = asyncio.Event()

    def message(self, _: Channel, payload: memoryview) -> None:
        self.messages.append(bytes(payload))
        self.arrived.set()

    def ended(self, _: Channel) -> None:
        self.lost.set()


async def _pair(tmp_path: Path) -> tuple[Channel, Heard, Channel, Heard, asyncio.AbstractServer]:
    loop = asyncio.get_running_loop()
    server_heard, client_heard = Heard(), Heard()
    made: asyncio.Future[Channel] = loop.create_future()

    def serve() -> Channel:
        channel = Channel(server_heard.message, server_heard.ended)
        made.set_result(channel)
        return channel

    path = str(tmp_path / "engine.sock")
    server = await loop.create_unix_server(serve, path)
    _, client = await loop.create_unix_connection(lambda: Channel(client_heard.message, client_heard.ended), path)
    return client, client_heard, await made, server_heard, server


async def _until(heard: Heard, count: int) -> None:
    while len(heard.messages) < count:
        heard.arrived.clear()
        await asyncio.wait_for(heard.arrived.wait(), 5)


async def test_messages_cross_whole_in_order_both_ways(tmp_path: Path) -> None:
    client, client_heard, engine, engine_heard, server = await _pair(tmp_path)
    big = bytes(range(256)) * 4096  # 1 MiB: many reads on the other side
    sent = [b"", b"one", big, b"two"]
    for payload in sent:
        client.send(payload)
    await _until(engine_heard, len(sent))
    assert engine_heard.messages == sent
    engine.send(b"reply")
    await _until(client_heard, 1)
    assert client_heard.messages == [b"reply"]
    client.close()
    await asyncio.wait_for(engine_heard.lost.wait(), 5)
    assert engine.closed
    server.close()


async def test_a_run_message_with_its_rows_survives_the_trip(tmp_path: Path) -> None:
    client, _, _, engine_heard, server = await _pair(tmp_path)
    ids = [np.arange(12, dtype=np.int64).reshape(2, 6), np.arange(5, dtype=np.int64).reshape(1, 5)]
    client.send(wire.encoder.encode(wire.Run(7, "m", "id", wire.Rows.pack(ids), 1.5, "batch")))
    await _until(engine_heard, 1)
    run = wire.requests.decode(engine_heard.messages[0])
    assert isinstance(run, wire.Run) and (run.id, run.priority) == (7, "batch")
    for got, want in zip(run.ids.unpack(), ids, strict=True):
        np.testing.assert_array_equal(got, want)
    client.close()
    server.close()


def test_frames_split_at_any_byte_are_heard_whole() -> None:
    heard = Heard()
    channel = Channel(heard.message)
    stream = b"".join(_LENGTH.pack(len(p)) + p for p in (b"alpha", b"", b"gamma" * 100))
    for at in range(len(stream)):  # every read boundary, one byte at a time after it
        channel.data_received(stream[:at])
        for byte in stream[at:]:
            channel.data_received(bytes([byte]))
        assert heard.messages == [b"alpha", b"", b"gamma" * 100]
        heard.messages.clear()


def test_a_frame_longer_than_any_message_is_refused() -> None:
    channel = Channel(Heard().message)
    with pytest.raises(ValueError, match="frame"):
        channel.data_received(_LENGTH.pack(0xFFFFFFFF) + b"x")


async def test_what_one_turn_sends_leaves_in_one_write() -> None:
    """Replies that a batch finishes together reach a front end in one write (one wake-up of
    its loop), and whole."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b.setblocking(False)
    transport, channel = await loop.create_unix_connection(lambda: Channel(Heard().message), sock=a)
    writes: list[bytes] = []
    write = transport.write

    def counted(data: bytes) -> None:
        writes.append(data)
        write(data)

    transport.write = counted  # type: ignore[method-assign]
    replies = [b"reply %d" % n for n in range(20)]
    for reply in replies:
        channel.send(reply)
    assert writes == []  # nothing leaves before the loop's turn ends
    await asyncio.sleep(0.05)
    framed = b"".join(_LENGTH.pack(len(p)) + p for p in replies)
    assert writes == [framed]
    assert b.recv(1 << 16) == framed
    channel.close()
    b.close()
