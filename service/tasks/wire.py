"""Wire types every task's schemas share. Bounds that depend on settings (inputs per request,
characters per input) are checked in `common.py`: pydantic's bounds are fixed at import."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.priorities import Priority

# A text holds at least one non-space character.
Text = Annotated[str, Field(min_length=1, pattern=r"\S")]
TextList = Annotated[list[Text], Field(min_length=1)]
# A text pair (premise and hypothesis, query and passage): exactly two texts.
TextPair = Annotated[list[Text], Field(min_length=2, max_length=2)]
TextsOrPairs = Annotated[list[Text | TextPair], Field(min_length=1)]


class StrictRequest(BaseModel):
    # Strict: 0 is not false and "5" is not 5; the schema says what is accepted, exactly.
    model_config = ConfigDict(extra="forbid", strict=True)

    def level(self) -> Priority | None:
        """The priority level the body asks for, if it says one."""
        return None


class Prioritised(StrictRequest):
    """A body whose items queue: it may say their priority level."""

    priority: Priority | None = Field(
        None,
        description="interactive (the default: live traffic, served first) or batch (bulk work: fills the "
        "room live traffic leaves, served as interactive after BERTSERVE_BATCH_MAX_WAIT_S); "
        "wins over the X-Priority header",
    )

    def level(self) -> Priority | None:
        return self.priority


class Usage(BaseModel):
    input_tokens: int


# Per input, beside the answer: how much of it the model read.
Truncated = Annotated[
    list[bool],
    Field(description="per input: true when it was over the model's max length and cut to its beginning"),
]
Covered = Annotated[
    list[int | list[int]],
    Field(
        description="per input: how many of its characters the model read (Python str indices), "
        "its whole length unless truncated; for a pair, [first, second]"
    ),
]

# Long texts read whole: the window overlap, and how many windows each input took.
Stride = Annotated[
    int | None,
    Field(
        ge=0,
        description="read a single text longer than the model's max length whole, in windows overlapping by "
        "this many tokens (as Hugging Face tokenizers' return_overflowing_tokens with this stride), pooled "
        "into one answer; pairs are cut to the max length as without it",
    ),
]
Windows = Annotated[
    list[int] | None,
    Field(
        description="per input: how many windows of the model's max length it took; given with stride "
        "(or return_chunks)",
    ),
]
