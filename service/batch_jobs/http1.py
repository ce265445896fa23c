"""The HTTP client of `run-batch --url`: one keep-alive HTTP/1.1 connection per request in
flight, h11 for the protocol (parsing, framing, chunked bodies, keep-alive rules), asyncio's
streams for the bytes.

Why not httpx (what the tests use): on a host it shares with the service the job's client
takes CPU from the service, and httpx spent about 1 ms of CPU a line there (its transport,
its pool and anyio above the same h11), so on 2 cores `run-batch --url` sent 0.75 x what the
service answered to wrk. The figures: docs/benchmarks.md, "Bulk work beside live traffic (`run-batch`)".

    Connection(url, headers, read_timeout_s, connect_timeout_s, tls)
    await connection.post(path, content=body) -> Response    raises TransportError
    connection.close()
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import h11

READ_BYTES = 65536


class TransportError(Exception):
    """No answer: the connection could not be made, broke, timed out or spoke no HTTP."""


@dataclass(frozen=True)
class Response:
    status_code: int
    headers: dict[str, str]  # names in lower case
    content: bytes

    @property
    def is_error(self) -> bool:
        return self.status_code >= HTTPStatus.BAD_REQUEST


class Connection:
    def __init__(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        read_timeout_s: float,
        connect_timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = [("host", parts.netloc), *headers]
        self._tls = tls or (ssl.create_default_context() if self._https else None)
        self._read_timeout_s = read_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def post(self, path: str, content: bytes) -> Response:
        """POST `content` to the URL's path + `path`. A connection kept from an earlier
        request that the server has since closed is opened again and the request sent once
        more at once; any other failure is a TransportError."""
        reused = self._writer is not None
        try:
            try:
                return await asyncio.wait_for(self._post(path, content), self._read_timeout_s)
            except (ConnectionError, h11.RemoteProtocolError, asyncio.IncompleteReadError):
                self.close()
                if not reused:
                    raise
                return await asyncio.wait_for(self._post(path, content), self._read_timeout_s)
        except (OSError, TimeoutError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            self.close()
            raise TransportError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc

    async def _post(self, path: str, content: bytes) -> Response:
        if self._writer is None:
            await self._connect()
        assert self._reader is not None and self._writer is not None
        conn = self._h11
        headers = [*self._headers, ("content-length", str(len(content)))]
        request = h11.Request(method="POST", target=self._prefix + path, headers=headers)
        self._writer.write(conn.send(request) + conn.send(h11.Data(data=content)) + conn.send(h11.EndOfMessage()))
        await self._writer.drain()
        response: h11.Response | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self._reader.read(READ_BYTES))  # b"": the server closed
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")
            # h11.InformationalResponse (a 100 Continue): the answer comes after it
        assert response is not None  # h11 gives the Response before the body and its end
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()  # keep-alive
        else:
            self.close()  # the server said close
        names = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
        return Response(response.status_code, names, bytes(body))

    async def _connect(self) -> None:
        server_hostname = self._host if self._https else None
        opening = asyncio.open_connection(self._host, self._port, ssl=self._tls, server_hostname=server_hostname)
        self._reader, self._writer = await asyncio.wait_for(opening, self._connect_timeout_s)
        self._h11 = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
