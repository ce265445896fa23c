"""Reduced-precision variants: int8 for the CPU provider, fp16 for the CUDA provider.

Each recipe writes a candidate graph; the caller verifies it and keeps it only if it passes
its gate. Recipes are tried from the fastest to the most conservative.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import numpy_helper


@dataclass(frozen=True)
class Recipe:
    name: str
    build: Callable[[Path, Path], None]


def _dynamic(per_channel: bool, ffn: str | None) -> Callable[[Path, Path], None]:
    def build(src: Path, dst: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if ffn == "qko":
            nodes: list[str] | None = attention_qko(onnx.load(str(src)))
        else:
            nodes = _ffn_matmuls(src, up_only=ffn == "up") if ffn else None
        logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer logs every node
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=["MatMul"],
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
        )

    return build


def _ffn_matmuls(src: Path, up_only: bool) -> list[str]:
    """MatMuls whose weight is not square: the feed-forward layers, which carry two thirds of
    the FLOPs. Attention projections (square) and the classifier head stay fp32: they are
    where dynamic int8 error hurts embeddings most. `up_only` also keeps the down projection
    in fp32: its input comes out of GELU with outliers that per-tensor activation scales clip."""
    model = onnx.load(str(src))
    shapes = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    picked = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        shape = next((shapes[i] for i in node.input if i in shapes), None)
        if shape is None or len(shape) != 2 or min(shape) <= 16:
            continue
        if shape[0] < shape[1] or (shape[0] > shape[1] and not up_only):
            picked.append(node.name)
    return picked


def attention_qko(model: onnx.ModelProto) -> list[str]:
    """The attention query, key and output projections: MatMuls with a square weight, less
    the value projections (those whose output reaches, through bias, reshape and transpose,
    a MatMul with the softmax). Quantized one at a time in all-MiniLM-L6-v2, each of these
    costs at most 1e-4 of min cosine; a value projection up to 1.6e-3, a feed-forward
    MatMul up to 3.2e-3 (models/README.md, "Embedding variants: the frontier")."""
    graph = model.graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    softmax_out = {o for n in graph.node if n.op_type == "Softmax" for o in n.output}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def feeds_softmax_product(node: onnx.NodeProto) -> bool:
        frontier = list(node.output)
        while frontier:
            for user in consumers.get(frontier.pop(), []):
                if user.op_type == "MatMul" and softmax_out.intersection(user.input):
                    return True
                if user.op_type in ("Add", "Reshape", "Transpose"):
                    frontier.extend(user.output)
        return False

    picked = []
    for node in graph.node:
        shape = next((shapes[i] for i in node.input if i in shapes), None)
        square = shape is not None and len(shape) == 2 and shape[0] == shape[1] > 16
        if node.op_type == "MatMul" and square and not feeds_softmax_product(node):
            picked.append(node.name)
    return picked


INT8_RECIPES = (
    Recipe("dynamic-int8-per-channel", _dynamic(per_channel=True, ffn=None)),
    Recipe("dynamic-int8-per-channel-ffn", _dynamic(per_channel=True, ffn="both")),
    Recipe("dynamic-int8-per-channel-ffn-up", _dynamic(per_channel=True, ffn="up")),
    # The last resort, and the slowest of them (docs/export.md, "Int8 recipes"): the only int8
    # recipe measured to pass the embedding gate on all-MiniLM-L6-v2 without a
    # model-specific choice of layers.
    Recipe("dynamic-int8-per-channel-attention-qko", _dynamic(per_channel=True, ffn="qko")),
)


def build_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and compute with fp32 inputs/outputs, so the service feeds it the same way.
    Ops sensitive to range (softmax over padded positions, layer norm) are kept in fp32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=["LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Erf"],
    )
    onnx.save(converted, str(dst))


FP16_RECIPES = (Recipe("fp16-keep-io-types", build_fp16),)
