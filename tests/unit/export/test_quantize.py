"""Which MatMuls the attention-qko int8 recipe picks, on a hand-built one-layer graph."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from service.export.quantize import attention_qko

HIDDEN = 32


def _weight(name: str, rows: int, cols: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros((rows, cols), dtype=np.float32), name)


def _layer() -> onnx.ModelProto:
    """One BERT layer as the exporter writes it: projections with a bias Add, value reshaped
    and transposed on its way to the product with the softmax; a feed-forward block."""
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q0"], name="query"),
        helper.make_node("Add", ["q0", "b"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k0"], name="key"),
        helper.make_node("Add", ["k0", "b"], ["k1"]),
        helper.make_node("Transpose", ["k1"], ["k"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "wv"], ["v0"], name="value"),
        helper.make_node("Add", ["v0", "b"], ["v1"]),
        helper.make_node("Reshape", ["v1", "shape"], ["v2"]),
        helper.make_node("Transpose", ["v2"], ["v"], perm=[0, 1, 2]),
        helper.make_node("MatMul", ["q", "k"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["context"], name="context"),
        helper.make_node("MatMul", ["context", "wo"], ["o0"], name="output"),
        helper.make_node("Add", ["o0", "x"], ["h"]),
        helper.make_node("MatMul", ["h", "wup"], ["up"], name="up"),
        helper.make_node("MatMul", ["up", "wdown"], ["y"], name="down"),
        helper.make_node("MatMul", ["y", "whead"], ["logits"], name="head"),
    ]
    inits = [_weight(n, HIDDEN, HIDDEN) for n in ("wq", "wk", "wv", "wo")]
    inits += [_weight("wup", HIDDEN, 4 * HIDDEN), _weight("wdown", 4 * HIDDEN, HIDDEN), _weight("whead", 2, 2)]
    inits += [
        numpy_helper.from_array(np.zeros(HIDDEN, dtype=np.float32), "b"),
        numpy_helper.from_array(np.array([1, -1, HIDDEN], dtype=np.int64), "shape"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence", HIDDEN])
    out = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph(nodes, "layer", [x], [out], inits))


def test_picks_query_key_and_output_projections() -> None:
    # Not the value projection (it reaches the softmax product), nor the feed-forward MatMuls
    # and the small head (not square, or too small), nor the two activation products.
    assert attention_qko(_layer()) == ["query", "key", "output"]


def test_no_attention_no_pick() -> None:
    model = _layer()
    kept = [n for n in model.graph.node if n.name in ("up", "down")]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    assert attention_qko(model) == []
