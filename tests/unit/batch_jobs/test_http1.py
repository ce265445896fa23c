"""run-batch's HTTP/1.1 client (service/batch_jobs/http1.py) against a small server on a real
socket: keep-alive, a chunked answer, a kept connection the server closed (sent again at
once), a server that answers nothing, and no server at all."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from service.batch_jobs.http1 import Connection, TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
    return lines[0], await reader.readexactly(length)


def _answer(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\nx-request-id: r1\r\n{extra}\r\n".encode() + body


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/prefix"


def _connection(url: str, read_timeout_s: float = 5.0) -> Connection:
    return Connection(url, [("x-priority", "batch")], read_timeout_s, 5.0)


def test_requests_share_one_kept_connection_and_the_url_path_prefixes() -> None:
    opened: list[int] = []
    seen: list[tuple[str, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(1)
        while True:
            try:
                line, body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append((line, body))
            writer.write(_answer(b'{"echo":' + body + b"}"))
            await writer.drain()
        writer.close()

    async def scenario() -> list[bytes]:
        server, url = await _serve(handler)
        connection = _connection(url)
        answers = [await connection.post("/classify", content=f'"{n}"'.encode()) for n in range(3)]
        connection.close()
        server.close()
        assert all(a.status_code == 200 and not a.is_error and a.headers["x-request-id"] == "r1" for a in answers)
        return [a.content for a in answers]

    assert asyncio.run(scenario()) == [b'{"echo":"0"}', b'{"echo":"1"}', b'{"echo":"2"}']
    assert len(opened) == 1
    assert [line for line, _ in seen] == ["POST /prefix/classify HTTP/1.1"] * 3


def test_a_chunked_answer_is_read_whole() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\ntransfer-encoding: chunked\r\nretry-after: 1\r\n\r\n")
        writer.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server, url = await _serve(handler)
        answer = await _connection(url).post("/embed", content=b"{}")
        server.close()
        assert (answer.status_code, answer.content, answer.headers["retry-after"]) == (429, b"hello world", "1")
        assert answer.is_error

    asyncio.run(scenario())


def test_a_kept_connection_the_server_closed_is_opened_again_and_the_request_sent_once_more() -> None:
    served: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        served.append("answered")
        writer.write(_answer(b"{}"))  # says nothing of closing, then closes: an idle timeout
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server, url = await _serve(handler)
        connection = _connection(url)
        assert (await connection.post("/a", content=b"{}")).status_code == 200
        await asyncio.sleep(0.05)  # the close reaches this side
        assert (await connection.post("/b", content=b"{}")).status_code == 200
        server.close()

    asyncio.run(scenario())
    assert served == ["answered", "answered"]


def test_no_answer_and_no_server_are_transport_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async def scenario() -> None:
        server, url = await _serve(silent)
        with pytest.raises(TransportError, match="TimeoutError"):
            await _connection(url, read_timeout_s=0.2).post("/classify", content=b"{}")
        server.close()
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        with pytest.raises(TransportError, match="ConnectionRefusedError"):
            await _connection(f"http://127.0.0.1:{free}").post("/classify", content=b"{}")

    asyncio.run(scenario())


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        _connection("ftp://example.com")
