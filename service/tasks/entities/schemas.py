"""POST /classify/tokens' body and answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.tasks.entities.post import DEFAULT_STRATEGY
from service.tasks.wire import Prioritised, Text, TextList, Usage


class EntitiesRequest(Prioritised):
    inputs: Text | TextList = Field(description="one text or a list of texts")
    model: str | None = Field(None, description="model name; optional when one token classifier is served")
    aggregation: Literal["none", "simple", "first", "average", "max"] = Field(
        DEFAULT_STRATEGY,
        description="how tokens become entities, as transformers' token-classification pipeline; the word "
        "strategies (first, average, max) end every entity on a word boundary",
    )
    ignore_labels: list[str] = Field(["O"], description="entity labels (raw tags with 'none') left out")
    truncate: bool = Field(True, description="tag the first window of a long input; false: 422 instead")
    stride: int | None = Field(None, ge=0, description="tag a long input whole, in windows overlapping by this")


class TaggedEntity(BaseModel):
    label: str
    score: float
    text: str
    start: int | None
    end: int | None


class EntitiesResponse(BaseModel):
    model: str
    entities: list[list[TaggedEntity]]
    covered: list[int | None] = Field(description="characters of each input that were tagged")
    usage: Usage
