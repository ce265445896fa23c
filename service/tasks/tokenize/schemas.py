"""POST /tokenize's body and answer, in text-embeddings-inference's format."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.tasks.wire import StrictRequest, Text, TextsOrPairs


class TokenizeRequest(StrictRequest):
    inputs: Text | TextsOrPairs = Field(description="one text, a list of texts, or a list of text pairs")
    model: str | None = Field(None, description="whose tokenizer; default: the embedding model's")
    add_special_tokens: bool = Field(True, description="include [CLS], [SEP] and the like")
    truncate: bool = Field(True, description="cut to the model's max length, as the model routes do")


class TokenInfo(BaseModel):
    id: int
    text: str
    special: bool
    start: int = Field(description="character offset into the text it came from (Python str index)")
    stop: int
