"""POST /embed and its OpenAI-compatible twin POST /v1/embeddings: two wire formats over one
embedding path (handler.py)."""

from __future__ import annotations

from service.errors import InvalidInput
from service.state import AppState
from service.tasks.common import Call, Texts
from service.tasks.embed.handler import embed
from service.tasks.embed.schemas import EmbedRequest, EmbedResponse, OpenAIEmbeddingRequest, OpenAIEmbeddingResponse
from service.tasks.spec import Reply, Route, Task


async def embed_route(body: EmbedRequest, state: AppState, call: Call) -> Reply:
    """Embed one text or a batch of texts."""
    texts = Texts.of(body.inputs, "inputs")
    out = await embed(
        state,
        call,
        texts,
        body.model,
        body.normalize,
        body.dimensions,
        body.truncate,
        body.stride,
        body.return_chunks,
        body.chunk_tokens,
    )
    answer: dict[str, object] = {
        "model": out.model,
        "embeddings": out.encoded(body.encoding_format),
        "dimensions": int(out.vectors.shape[1]),
        "truncated": out.truncated,
        "covered": out.covered,
    }
    chunks = body.return_chunks or body.chunk_tokens is not None
    if body.stride is not None or chunks:
        answer["windows"] = out.windows
    if chunks:
        answer["chunks"] = out.encoded_chunks(body.encoding_format)
    return Reply({**answer, "usage": {"input_tokens": out.tokens}})


async def openai_embeddings(body: OpenAIEmbeddingRequest, state: AppState, call: Call) -> Reply:
    """OpenAI-compatible embeddings: the official clients work unchanged. Vectors are
    L2-normalised, as OpenAI's are; inputs longer than the model's max length are truncated
    without a word: OpenAI's answer, kept exact, has no field for it (/embed says which). With
    `stride` (the clients' `extra_body`) they are read whole, in windows, as on /embed; the
    usage counts every token run."""
    if isinstance(body.input, list) and body.input and not isinstance(body.input[0], str):
        raise InvalidInput("token-id inputs are not supported: send text", param="input")
    texts = Texts.of(body.input, "input")  # type: ignore[arg-type]
    out = await embed(state, call, texts, body.model, True, body.dimensions, True, body.stride)
    data = out.encoded(body.encoding_format)
    return Reply(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(data)],
            "model": out.model,
            "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens},
        }
    )


TASK = Task(
    "embed",
    ("embed",),
    (
        Route("/embed", EmbedRequest, EmbedResponse, embed_route),
        Route("/v1/embeddings", OpenAIEmbeddingRequest, OpenAIEmbeddingResponse, openai_embeddings),
    ),
)
