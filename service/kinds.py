"""The kinds of model a directory can hold (its manifest's `task`), and what the graph of each
gives per row. Shared by the exporter (which writes them), the loader (which checks a graph's
output against them) and the tasks (which say which kinds serve them): one place to add one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

ModelKind = Literal["classify", "embed", "rerank", "entities"]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)


@dataclass(frozen=True)
class KindInfo:
    """`output`: the width of the graph's last axis: one per label, one logit, or the
    embedding's dimension. `per_token`: one output row per token rather than per input."""

    output: Literal["labels", "one", "dimension"]
    per_token: bool
    help: str


KINDS: dict[ModelKind, KindInfo] = {
    "classify": KindInfo("labels", False, "a sequence-classification checkpoint: one score per label"),
    "embed": KindInfo("dimension", False, "an encoder, pooled to one vector per input"),
    "rerank": KindInfo("one", False, "a cross-encoder: one relevance logit per (query, text) pair"),
    "entities": KindInfo(
        "labels", True, "a token-classification (NER) checkpoint: per-token logits, served as entities"
    ),
}


def output_width(kind: ModelKind, labels: int, dimension: int | None) -> int | None:
    """The width a graph of this kind must give, from its manifest's labels and dimension."""
    rule = KINDS[kind].output
    if rule == "labels":
        return labels
    return 1 if rule == "one" else dimension
