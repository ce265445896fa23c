"""The unit tier runs without torch and transformers: a run of this folder alone fails if
either was loaded (tests/unit/test_tiers.py checks the imports of every unit module in any
run). Models the unit tests need are hand-built ONNX graphs, not exports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

UNIT = Path(__file__).resolve().parent
TORCH_SIDE = ("torch", "transformers")


@pytest.fixture(scope="session", autouse=True)
def _neither_torch_nor_transformers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Checked at the end of a run made of unit tests only: a fixture or test that reaches
    torch lazily is caught here, which an import check cannot see. In a run with the other
    tiers their fixtures load torch legitimately, so nothing is asserted there."""
    yield
    if all(Path(item.path).resolve().is_relative_to(UNIT) for item in request.session.items):
        loaded = [name for name in TORCH_SIDE if name in sys.modules]
        assert loaded == [], f"the unit tests loaded {loaded}: such a test belongs in tests/export or integration"


@pytest.fixture(scope="session")
def tiny_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedding-shaped graph (input_ids, attention_mask -> sentence_embedding of width
    4) built with onnx alone: enough for onnxruntime to make a session and its threads."""
    ids = helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", onnx.TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("sentence_embedding", onnx.TensorProto.FLOAT, ["batch", 4])
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["kept"]),
        helper.make_node("Cast", ["kept"], ["kept_f"], to=onnx.TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["kept_f", "axes"], ["summed"], keepdims=1),
        helper.make_node("Mul", ["summed", "width"], ["sentence_embedding"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.ones((1, 4), dtype=np.float32), "width"),
    ]
    graph = helper.make_graph(nodes, "tiny", [ids, mask], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # read by every onnxruntime the project supports
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("graph") / "model.onnx"
    onnx.save(model, path)
    return path
