"""Wrap the HF model so the graph returns exactly what the service serves, and export it."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from service.export.errors import ExportError


class ClassifierGraph(torch.nn.Module):
    """Returns raw logits, one per label (a cross-encoder: one), or for a token classifier one
    row per token, (batch, sequence, labels); softmax/sigmoid/aggregation are applied by the
    service."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.model(**_feeds(self.input_names, input_ids, attention_mask, token_type_ids))
        return out.logits  # type: ignore[no-any-return]


class EmbeddingGraph(torch.nn.Module):
    """Pools inside the graph: the first output is one unnormalised vector per row. The second
    is the encoder's last hidden state, (batch, sequence, hidden), for late chunking: a chunk's
    vector pooled from the tokens of a whole window, which saw the text around the chunk."""

    def __init__(self, model: torch.nn.Module, input_names: list[str], pooling: str) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.pooling = pooling

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feeds = _feeds(self.input_names, input_ids, attention_mask, token_type_ids)
        hidden = self.model(**feeds).last_hidden_state
        if self.pooling == "cls":
            return torch.as_tensor(hidden[:, 0]), hidden
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return torch.as_tensor((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)), hidden


def _feeds(
    names: list[str], input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in names and token_type_ids is not None:
        feeds["token_type_ids"] = token_type_ids
    return feeds


# The graph's outputs, in the order its forward returns them; the first is the one served.
SENTENCE_OUTPUT = "sentence_embedding"
TOKEN_OUTPUT = "token_embeddings"


def output_names(task: str) -> list[str]:
    return [SENTENCE_OUTPUT, TOKEN_OUTPUT] if task == "embed" else ["logits"]


def build_graph(model: torch.nn.Module, task: str, input_names: list[str], pooling: str | None) -> torch.nn.Module:
    if task in ("classify", "rerank", "entities"):
        return ClassifierGraph(model, input_names).eval()
    return EmbeddingGraph(model, input_names, pooling or "mean").eval()


def export_onnx(
    graph: torch.nn.Module, example: dict[str, Any], outputs: list[str], path: Path, max_length: int
) -> None:
    """Export with the dynamo exporter: the TorchScript tracer bakes the attention-mask shape
    of recent transformers releases into the graph and gives wrong numbers on other shapes.
    The example must have batch >= 2 and sequence >= 2, or the exporter specialises them.
    `outputs`: one name for each output of the graph, in the order it returns them."""
    names = list(example)
    args = tuple(torch.as_tensor(example[n]) for n in names)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("sequence", min=1, max=max_length)
    shapes = {n: {0: batch, 1: seq} for n in names}
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), _quiet_loggers():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                graph,
                args,
                input_names=names,
                output_names=outputs,
                dynamic_shapes=shapes,
                opset_version=18,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; all mean the same to a user
            raise ExportError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    if program is None:
        raise ExportError("ONNX export returned no program")
    _drop_stack_traces(program.model)
    program.save(str(path), external_data=False)


# Each node's Python stack at export, with the absolute paths of the files on it: the same
# checkpoint exported from another checkout or environment would give another graph file and
# checksum. Debugging aids only; onnxruntime never reads them.
STACK_TRACE = "pkg.torch.onnx.stack_trace"


def _drop_stack_traces(model: Any) -> None:
    """Remove the stack traces from every node of an onnx_ir model, functions included."""
    graphs = [model.graph, *model.functions.values()]
    for graph in graphs:
        for node in graph:
            node.metadata_props.pop(STACK_TRACE, None)


@contextlib.contextmanager
def _quiet_loggers() -> Any:
    loggers = [logging.getLogger(n) for n in ("torch", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
