"""POST /embed and its OpenAI-compatible twin POST /v1/embeddings: two wire formats over one
embedding path (serving/embed.py)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import Authorized, CallOf, State
from service.api.responses import JSONBytes
from service.api.schemas import (
    MODEL_ROUTE_RESPONSES,
    EmbedRequest,
    EmbedResponse,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
)
from service.errors import InvalidInput
from service.serving.common import Texts
from service.serving.embed import embed as embed_texts

router = APIRouter()


@router.post("/embed", response_model=EmbedResponse, responses=MODEL_ROUTE_RESPONSES, response_class=JSONBytes)
async def embed(body: EmbedRequest, state: State, call: CallOf, _: Authorized) -> Response:
    """Embed one text or a batch of texts."""
    texts = Texts.of(body.inputs, "inputs")
    out = await embed_texts(state, call, texts, body.model, body.normalize, body.dimensions, body.truncate)
    return JSONBytes(
        {
            "model": out.model,
            "embeddings": out.encoded(body.encoding_format),
            "dimensions": int(out.vectors.shape[1]),
            "usage": {"input_tokens": out.tokens},
        }
    )


@router.post(
    "/v1/embeddings",
    response_model=OpenAIEmbeddingResponse,
    responses=MODEL_ROUTE_RESPONSES,
    response_class=JSONBytes,
)
async def openai_embeddings(body: OpenAIEmbeddingRequest, state: State, call: CallOf, _: Authorized) -> Response:
    """OpenAI-compatible embeddings: the official clients work unchanged. Vectors are
    L2-normalised, as OpenAI's are; inputs longer than the model's max length are truncated."""
    if isinstance(body.input, list) and body.input and not isinstance(body.input[0], str):
        raise InvalidInput("token-id inputs are not supported: send text", param="input")
    texts = Texts.of(body.input, "input")  # type: ignore[arg-type]
    out = await embed_texts(state, call, texts, body.model, True, body.dimensions, True)
    data = out.encoded(body.encoding_format)
    return JSONBytes(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(data)],
            "model": out.model,
            "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens},
        }
    )
