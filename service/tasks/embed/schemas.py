"""POST /embed's and OpenAI's POST /v1/embeddings' bodies and answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.tasks.wire import Covered, Prioritised, Stride, Text, TextList, Truncated, Usage, Windows


class EmbedRequest(Prioritised):
    inputs: Text | TextList = Field(description="one text or a list of texts")
    model: str | None = Field(None, description="model name; optional when one embedding model is served")
    normalize: bool = Field(True, description="L2-normalise each vector")
    dimensions: int | None = Field(None, ge=1, description="keep the first N components (re-normalised)")
    truncate: bool = Field(True, description="cut inputs to the model's max length; false: 422 instead")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32")
    stride: Stride = None
    return_chunks: bool = Field(
        False,
        description="also give, per input, one vector per chunk (a window of the model's max length; with "
        "stride, every window) with the characters it covers: input[start:end]",
    )
    chunk_tokens: int | None = Field(
        None,
        ge=1,
        description="chunks of about this many tokens, cut at word boundaries inside the windows, each "
        "late-chunked: the mean of its tokens' states from the whole window around it (implies "
        "return_chunks; an embedding model exported with token states)",
    )


class EmbedChunk(BaseModel):
    start: int | None = Field(description="where the chunk's first token starts in the input (None: no offsets)")
    end: int | None = Field(description="where its last token ends")
    window: int = Field(description="the window it was read in (0: the first)")
    embedding: list[float] | str


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]] | list[str]
    dimensions: int
    truncated: Truncated
    covered: Covered
    windows: Windows = None
    chunks: list[list[EmbedChunk]] | None = Field(None, description="per input, its chunks (with return_chunks)")
    usage: Usage


class OpenAIEmbeddingRequest(Prioritised):
    input: Text | TextList | list[int] | list[list[int]] = Field(
        description="text or list of texts (token-id inputs are refused)"
    )
    model: str = Field(description="model name as listed by GET /models")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, description="accepted and ignored")
    stride: Stride = None  # not OpenAI's: the official clients send it as extra_body


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage
