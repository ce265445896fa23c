"""The direct path (service/api/direct.py) answers exactly what the full path answers: the same
requests, sent once with it and once with it switched off, get the same statuses, bodies and
headers; only well-formed requests take it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.api import direct
from tests.integration.conftest import Client

LONG = "word " * 200
# (path, body or raw bytes, extra headers, whether it takes the direct path): good requests
# and every kind of refusal. Whatever validates takes it; the serving layer's refusals too.
CASES: list[tuple[str, Any, dict[str, str], bool]] = [
    ("/classify", {"inputs": "a fine film"}, {}, True),
    ("/classify", {"inputs": ["one", "two words"], "top_k": 1, "function": "sigmoid"}, {}, True),
    ("/classify", {"inputs": [["a", "b"]]}, {}, True),  # pairs to a single-text model: 422 from serving
    ("/classify", {"inputs": "x", "model": "nope"}, {}, True),  # 404
    ("/classify", {"inputs": "x", "model": "tiny-emb"}, {}, True),  # the wrong task: 404
    ("/classify", {"inputs": LONG, "truncate": False}, {}, True),  # 422 from the tokenizer
    ("/classify", {"inputs": "x"}, {"x-request-timeout": "abc"}, True),  # 422 on the deadline header
    ("/classify", {"inputs": ""}, {}, False),  # 422 from the schema
    ("/classify", {"inputs": "x", "extra": 1}, {}, False),  # unknown field
    ("/classify", {"inputs": "x", "top_k": "2"}, {}, False),  # strict types
    ("/classify", b'{"inputs": "x"', {}, False),  # not JSON
    ("/classify", b'{"inputs": "x", "top_k": NaN}', {}, False),  # what only one JSON parser takes
    ("/classify", b'{"inputs": "x"}', {"content-type": "text/plain"}, False),
    ("/classify", b"[]", {}, False),
    ("/embed", {"inputs": ["a fine film", "a dull film"], "dimensions": 4}, {}, True),
    ("/embed", {"inputs": "a fine film", "encoding_format": "base64", "normalize": False}, {}, True),
    ("/embed", {"inputs": "x", "dimensions": 10_000}, {}, True),
    ("/v1/embeddings", {"input": ["a fine film"], "model": "tiny-emb"}, {}, True),
    ("/v1/embeddings", {"input": [[1, 2, 3]], "model": "tiny-emb"}, {}, True),  # token ids: 422 from the route
    ("/rerank", {"query": "a film", "texts": ["a fine film", "a dull day"]}, {}, True),  # cosine on tiny-emb
    ("/rerank", {"query": "a film", "texts": []}, {}, False),
    ("/v2/rerank", {"query": "a film", "documents": ["a fine film"], "model": "tiny-emb"}, {}, True),
    ("/tokenize", {"inputs": ["a fine film"], "model": "tiny-clf"}, {}, True),
    ("/classify/tokens", {"inputs": "a fine film"}, {}, True),  # no tagger served: 404 from serving
]


async def _answers(c: httpx.AsyncClient, key: str | None = None) -> list[tuple[int, Any, dict[str, str]]]:
    out = []
    for path, body, headers, _ in CASES:
        sent = {"x-request-id": "same-id", **headers}
        if key is not None:
            sent["authorization"] = f"Bearer {key}"
        if isinstance(body, bytes):
            sent.setdefault("content-type", "application/json")
            r = await c.post(path, content=body, headers=sent)
        else:
            r = await c.post(path, json=body, headers=sent)
        kept = {k: v for k, v in r.headers.items() if not k.startswith("x-") or k == "x-request-id"}
        answer = r.json()
        if isinstance(answer, dict):
            answer.pop("id", None)  # Cohere's answer carries a fresh id each time
        out.append((r.status_code, answer, kept))
    return out


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that took the direct path."""
    paths: list[str] = []
    dispatch = direct.dispatch

    async def counted(*args: Any) -> None:
        paths.append(args[3]["path"])
        await dispatch(*args)

    monkeypatch.setattr(direct, "dispatch", counted)
    return paths


@pytest.mark.parametrize("keys", [[], ["k1"]])
async def test_the_direct_path_answers_what_the_full_path_does(
    make_client: Client, monkeypatch: pytest.MonkeyPatch, taken: list[str], keys: list[str]
) -> None:
    key = keys[0] if keys else None
    async with make_client(api_keys=keys) as c:
        with_it = await _answers(c, key)
        expected = [path for path, _, _, takes in CASES if takes]
        assert taken == expected
        assert sum(status == 200 for status, _, _ in with_it) == 8
        if keys:
            keyless = await _answers(c)
            # Without a key, the full path's 401 (each request the direct path would take).
            assert {status for (status, _, _), case in zip(keyless, CASES, strict=True) if case[3]} == {401}
            assert taken == expected
        monkeypatch.setattr(direct, "ROUTES", {})
        without = await _answers(c, key)
    assert taken == expected
    for case, a, b in zip(CASES, with_it, without, strict=True):
        assert a == b, case
