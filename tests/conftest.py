"""Fixtures shared by the tiers that serve exported tiny models (integration, export, e2e).

They build their models with torch and transformers, so those are imported inside each
fixture: the unit tier collects this file too and must load neither (tests/unit/conftest.py
checks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with a tiny classifier (with int8) and a tiny embedding model."""
    from service.export.exporter import ExportOptions, export_checkpoint
    from tests.tiny import make_checkpoint

    root = tmp_path_factory.mktemp("tiny")
    repo = root / "models"
    repo.mkdir()
    clf = make_checkpoint(root / "ckpt-clf", "bert", head=True)
    emb = make_checkpoint(root / "ckpt-emb", "bert", head=False, seed=1)
    export_checkpoint(ExportOptions(clf, repo / "tiny-clf", "classify", int8=True), log=lambda _: None)
    export_checkpoint(ExportOptions(emb, repo / "tiny-emb", "embed"), log=lambda _: None)
    return repo


@pytest.fixture(scope="session")
def broken_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier whose graph has a 1,000-token vocabulary behind the full 30,522-token
    tokenizer: inputs with ids past 999 make onnxruntime fail at run time ("!" is id 999)."""
    from service.export.checkpoint import inspect_checkpoint, load_torch_model
    from service.export.graph import build_graph, export_onnx
    from service.manifest import Manifest, VariantInfo, sha256_file
    from tests.tiny import TOKENIZER_FILES, make_checkpoint

    root = tmp_path_factory.mktemp("broken")
    ckpt = make_checkpoint(root / "ckpt", "bert", head=True)
    config = json.loads((ckpt / "config.json").read_text())
    small = make_checkpoint(root / "small", "bert", head=True, vocab_size=1000)
    model_dir = root / "models" / "broken"
    model_dir.mkdir(parents=True)
    graph = build_graph(
        load_torch_model(inspect_checkpoint(small), "classify"),
        "classify",
        ["input_ids", "attention_mask", "token_type_ids"],
        None,
    )
    example = {n: np.ones((2, 4), dtype=np.int64) for n in ("input_ids", "attention_mask", "token_type_ids")}
    export_onnx(graph, example, ["logits"], model_dir / "model.onnx", 128)
    for name in TOKENIZER_FILES:
        shutil.copyfile(ckpt / name, model_dir / name)
    shutil.copyfile(ckpt / "config.json", model_dir / "config.json")
    manifest = Manifest(
        name="broken",
        task="classify",
        architecture="bert",
        max_length=128,
        inputs=["input_ids", "attention_mask", "token_type_ids"],
        output="logits",
        labels=[config["id2label"][str(i)] for i in range(3)],
        variants={"fp32": VariantInfo(file="model.onnx", precision="fp32")},
    )
    manifest.files = {p.name: sha256_file(p) for p in model_dir.iterdir()}
    manifest.write(model_dir)
    return root / "models"
