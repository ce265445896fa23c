"""run-batch's --url sender against a service that answers 429 and 503 for a while: it waits
as told (Retry-After) and tries again, and gives a line the last answer when it runs out of
tries. The service here is httpx's in-process transport behind the sender's Poster interface
(a failed transport raises http1's TransportError, as the real connection does): what is
tested is the sender."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson

from service.batch_jobs.http1 import TransportError
from service.batch_jobs.lines import Request
from service.batch_jobs.remote import Sender, retry_after


class Posting:
    """An httpx client as the sender's Poster: transport failures become TransportErrors."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, /, *, content: bytes) -> httpx.Response:
        try:
            return await self.client.post(url, content=content)
        except httpx.TransportError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc


REQUEST = Request(1, "a", "/classify", {"inputs": "x"}, 10)


def sender(answers: list[httpx.Response | Exception], seen: list[httpx.Request], attempts: int = 10) -> Sender:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    transport = httpx.MockTransport(handler)
    headers = {"x-priority": "batch"}
    # No backoff of its own: the service's Retry-After (0 here) is the wait.
    client = httpx.AsyncClient(transport=transport, base_url="http://svc", headers=headers)
    return Sender([Posting(client)], attempts, 0.0)


def later(status: int) -> httpx.Response:
    return httpx.Response(status, headers={"retry-after": "0"}, json={"error": {"type": "overloaded"}})


async def test_429_and_503_are_retried_until_answered() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [
        later(429),
        later(503),
        httpx.ConnectError("refused"),
        httpx.Response(200, headers={"x-request-id": "r9"}, json={"ok": True}),
    ]
    line, error = await sender(answers, seen)(REQUEST)
    assert not error
    out = orjson.loads(line)
    assert out["response"] == {"status_code": 200, "request_id": "r9", "body": {"ok": True}}
    assert len(seen) == 4
    assert {r.headers["x-priority"] for r in seen} == {"batch"}
    assert orjson.loads(seen[0].content) == {"inputs": "x"}


async def test_out_of_tries_the_line_gets_the_last_answer_or_error() -> None:
    seen: list[httpx.Request] = []
    line, error = await sender([later(429), later(429)], seen, attempts=2)(REQUEST)
    assert error and orjson.loads(line)["response"]["status_code"] == 429
    failures: list[httpx.Response | Exception] = [httpx.ConnectError("refused"), httpx.ConnectError("refused")]
    line, error = await sender(failures, seen, attempts=2)(REQUEST)
    out = orjson.loads(line)
    assert error and out["response"] is None
    assert out["error"] == {
        "code": "unreachable",
        "message": "no answer after 2 tries: ConnectError: refused",
        "line": 1,
    }


def test_retry_after_is_read_in_seconds() -> None:
    answer: Callable[[str], httpx.Response] = lambda value: httpx.Response(429, headers={"retry-after": value})  # noqa: E731
    assert [retry_after(answer(v)) for v in ("2", "0.5", "soon", "-1")] == [2.0, 0.5, 0.0, 0.0]
    assert retry_after(httpx.Response(429)) == 0.0
