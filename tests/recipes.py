"""Graphs gone wrong on purpose for the export tests: variant recipes (one that negates, one
that copies), and the fp32 export edited after it is written."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from service.export import exporter


def negate(model: onnx.ModelProto, index: int = 0) -> None:
    """The graph's output `index` comes out negated; a node that read it (an embedding graph's
    pooling reads the hidden state) keeps reading the raw one."""
    out = model.graph.output[index].name
    for node in model.graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == out:
                    names[i] = f"{out}_raw"
    model.graph.node.append(onnx.helper.make_node("Neg", [f"{out}_raw"], [out]))


def negated_output(src: Path, dst: Path) -> None:
    """A recipe gone wrong: the graph's output comes out negated."""
    model = onnx.load(str(src))
    negate(model)
    onnx.save(model, str(dst))


def edit_exports(monkeypatch: pytest.MonkeyPatch, edit: Callable[[onnx.ModelProto], None]) -> None:
    """The exporter writes its fp32 graph as always, then `edit` changes it on disk, before
    verification reads it."""
    real_export = exporter.export_onnx

    def edited(*args: object, **kwargs: object) -> None:
        real_export(*args, **kwargs)  # type: ignore[arg-type]
        path = str(args[3])  # export_onnx(graph, example, outputs, path, max_length)
        model = onnx.load(path)
        edit(model)
        onnx.save(model, path)

    monkeypatch.setattr(exporter, "export_onnx", edited)


def copy_graph(src: Path, dst: Path) -> None:
    """A recipe that changes nothing: it passes any gate."""
    shutil.copyfile(src, dst)
