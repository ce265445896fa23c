"""Variant recipes for the export tests: one that goes wrong on purpose, one that copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx


def negated_output(src: Path, dst: Path) -> None:
    """A recipe gone wrong: the graph's output comes out negated."""
    model = onnx.load(str(src))
    out = model.graph.output[0].name
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == out:
                node.output[i] = f"{out}_raw"
    model.graph.node.append(onnx.helper.make_node("Neg", [f"{out}_raw"], [out]))
    onnx.save(model, str(dst))


def copy_graph(src: Path, dst: Path) -> None:
    """A recipe that changes nothing: it passes any gate."""
    shutil.copyfile(src, dst)
