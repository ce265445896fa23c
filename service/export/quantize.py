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


INT8_RECIPES = (
    Recipe("dynamic-int8-per-channel", _dynamic(per_channel=True, ffn=None)),
    Recipe("dynamic-int8-per-channel-ffn", _dynamic(per_channel=True, ffn="both")),
    Recipe("dynamic-int8-per-channel-ffn-up", _dynamic(per_channel=True, ffn="up")),
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
