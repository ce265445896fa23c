"""POST /embed and its OpenAI-compatible twin POST /v1/embeddings: one embedding path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.deps import Authorized, State, text_inputs, until_disconnect
from service.api.responses import JSONBytes
from service.api.schemas import ERRORS, EmbedRequest, EmbedResponse, OpenAIEmbeddingRequest, OpenAIEmbeddingResponse
from service.api.state import AppState
from service.errors import InvalidInput
from service.tasks.embed import finalize, to_base64

router = APIRouter()


@dataclass
class Embedded:
    model: str
    vectors: np.ndarray
    tokens: int

    def encoded(self, encoding_format: str) -> list[str] | np.ndarray:
        return to_base64(self.vectors) if encoding_format == "base64" else self.vectors


async def _embed(
    state: AppState,
    request: Request,
    texts: list[str],
    model: str | None,
    normalize: bool,
    dimensions: int | None,
    truncate: bool,
) -> Embedded:
    pipeline = state.resolve("embed", model)
    request.state.model = pipeline.name
    full = pipeline.manifest.dimension or 0
    if dimensions is not None and dimensions > full:
        raise InvalidInput(f"dimensions {dimensions} is over the model's {full}", param="dimensions")
    state.admit()
    pooled, tokens = await until_disconnect(request, pipeline.infer(texts, truncate, state.deadline(request)))
    return Embedded(pipeline.name, finalize(pooled, normalize, dimensions), tokens)


@router.post("/embed", response_model=EmbedResponse, responses=ERRORS, response_class=JSONBytes)
async def embed(body: EmbedRequest, request: Request, state: State, _: Authorized) -> Response:
    """Embed one text or a batch of texts."""
    texts = text_inputs(body.inputs, state.settings.max_inputs, state.settings.max_input_chars)
    out = await _embed(state, request, texts, body.model, body.normalize, body.dimensions, body.truncate)
    return JSONBytes(
        {
            "model": out.model,
            "embeddings": out.encoded(body.encoding_format),
            "dimensions": int(out.vectors.shape[1]),
            "usage": {"input_tokens": out.tokens},
        }
    )


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse, responses=ERRORS, response_class=JSONBytes)
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request, state: State, _: Authorized) -> Response:
    """OpenAI-compatible embeddings: the official clients work unchanged. Vectors are
    L2-normalised, as OpenAI's are; inputs longer than the model's max length are truncated."""
    if isinstance(body.input, list) and body.input and not isinstance(body.input[0], str):
        raise InvalidInput("token-id inputs are not supported: send text", param="input")
    texts = text_inputs(body.input, state.settings.max_inputs, state.settings.max_input_chars, param="input")  # type: ignore[arg-type]
    out = await _embed(state, request, texts, body.model, True, body.dimensions, True)
    data = out.encoded(body.encoding_format)
    return JSONBytes(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(data)],
            "model": out.model,
            "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens},
        }
    )
