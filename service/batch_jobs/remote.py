"""The `--url` mode: every line sent to a running service at batch priority (the X-Priority
header; a body that states its own priority keeps it), with at most `concurrency` requests
in flight. A 429 or a 503 (queue full, draining, restarting) and a connection that fails are
retried: after the Retry-After the service sent, or an exponential backoff with jitter if
that is longer, up to `ATTEMPTS` tries; then the line gets the last answer or error."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Mapping, Sequence
from typing import Protocol

import orjson

from service.batch_jobs.http1 import Connection, TransportError
from service.batch_jobs.lines import Request, answered, failed
from service.http_errors import TABLE

ATTEMPTS = 10
BACKOFF_S = 0.25  # the first wait; doubled each try
MAX_BACKOFF_S = 30.0
# Queue full, and not ready or draining: the service's answers that say "later".
RETRIED = frozenset({TABLE["overloaded"].status, TABLE["unavailable"].status})
# Above the service's default request timeout (30 s), so its own 504 comes first.
READ_TIMEOUT_S = 120.0


CONNECT_TIMEOUT_S = 10.0


class Answer(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def is_error(self) -> bool: ...


class Poster(Protocol):
    """What sends a line: service/batch_jobs/http1.py's Connection (an adapted httpx client in tests)."""

    async def post(self, url: str, /, *, content: bytes) -> Answer: ...


def connections(url: str, concurrency: int, api_key: str | None) -> list[Connection]:
    """One keep-alive connection per request in flight (service/batch_jobs/http1.py says why
    not httpx: with it the job's client took a core's worth of CPU from the service it fed)."""
    headers = [("content-type", "application/json"), ("x-priority", "batch")]
    if api_key:
        headers.append(("authorization", f"Bearer {api_key}"))
    tls = ssl.create_default_context() if url.startswith("https:") else None  # one for all: each costs ~20 ms
    return [Connection(url, headers, READ_TIMEOUT_S, CONNECT_TIMEOUT_S, tls) for _ in range(max(1, concurrency))]


def backoff(attempt: int, first_s: float = BACKOFF_S) -> float:
    """Jittered (AWS's "Exponential Backoff And Jitter"): senders that were refused together
    do not come back together."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF_S, first_s * 2.0**attempt)


def retry_after(response: Answer) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


class Sender:
    """Answers a line through whichever of `http` is free: one per request in flight."""

    def __init__(self, http: Sequence[Poster], attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> None:
        self._free: asyncio.Queue[Poster] = asyncio.Queue()
        for one in http:
            self._free.put_nowait(one)
        self.attempts = attempts
        self.backoff_s = backoff_s

    async def __call__(self, request: Request) -> tuple[bytes, bool]:
        http = await self._free.get()
        try:
            return await self._send(http, request)
        finally:
            self._free.put_nowait(http)

    async def _send(self, http: Poster, request: Request) -> tuple[bytes, bool]:
        content = orjson.dumps(request.body)
        last: Answer | None = None
        problem = ""
        for attempt in range(self.attempts):
            try:
                last = await http.post(request.url, content=content)
            except TransportError as exc:  # says what failed: "ConnectionRefusedError: ..."
                last, problem = None, str(exc)
                wait = backoff(attempt, self.backoff_s)
            else:
                if last.status_code not in RETRIED:
                    break
                wait = max(retry_after(last), backoff(attempt, self.backoff_s))
            if attempt + 1 < self.attempts:
                await asyncio.sleep(wait)
        if last is None:
            message = f"no answer after {self.attempts} tries: {problem}"
            return failed(request, "unreachable", message), True
        request_id = last.headers.get("x-request-id", "")
        line = answered(request.custom_id, last.status_code, request_id, last.content, trusted=False)
        return line, last.is_error
