"""POST /classify's body and answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.tasks.wire import (
    Covered,
    Prioritised,
    Stride,
    Text,
    TextsOrPairs,
    Truncated,
    Usage,
    Windows,
)


class ClassifyRequest(Prioritised):
    inputs: Text | TextsOrPairs = Field(
        description="one text, a list of texts, or a list of text pairs ([first, second]); "
        "pairs need a model exported for pairs"
    )
    model: str | None = Field(None, description="model name; optional when one classifier is served")
    top_k: int | None = Field(None, ge=1, description="keep the k best labels per input")
    function: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="score function; default softmax (single-label) or sigmoid (multi-label)"
    )
    truncate: bool = Field(True, description="cut inputs to the model's max length; false: 422 instead")
    stride: Stride = None
    window_pooling: Literal["mean", "max"] = Field(
        "mean",
        description="how a text read in windows is judged: mean, the mean of the windows' logits, then the "
        "function; max, per label the highest score of any window (a label any window finds)",
    )


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifyResponse(BaseModel):
    model: str
    predictions: list[list[LabelScore]]
    truncated: Truncated
    covered: Covered
    windows: Windows = None
    usage: Usage
