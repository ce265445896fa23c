"""The manifest the exporter writes and the runtime reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.manifest import MANIFEST_FILE, Manifest, VariantInfo


def _manifest() -> Manifest:
    return Manifest(
        name="m",
        task="embed",
        architecture="bert",
        max_length=128,
        inputs=["input_ids", "attention_mask"],
        output="sentence_embedding",
        dimension=32,
        pooling="mean",
        variants={"fp32": VariantInfo(file="model.onnx", precision="fp32")},
    )


def test_a_written_manifest_reads_back_equal(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest.write(tmp_path)
    assert Manifest.read(tmp_path) == manifest
    assert "pooling_in_graph" not in json.loads((tmp_path / MANIFEST_FILE).read_text())


def test_manifests_written_with_pooling_in_graph_still_load(tmp_path: Path) -> None:
    """Older exporters wrote `pooling_in_graph: true`; nothing reads it, and the strict schema
    would refuse those model directories if the retired key were not dropped."""
    old = {**json.loads(_manifest().model_dump_json()), "pooling_in_graph": True}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(old))
    assert Manifest.read(tmp_path) == _manifest()
    assert not hasattr(Manifest.read(tmp_path), "pooling_in_graph")


def test_a_token_classifier_written_as_tokens_loads_as_entities(tmp_path: Path) -> None:
    """Older exporters named the token-classification kind `tokens`: their model directories
    still load, under the kind's name; an unknown kind is still refused."""
    old = {**json.loads(_manifest().model_dump_json()), "task": "tokens", "labels": ["O", "B-PER"]}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(old))
    assert Manifest.read(tmp_path).task == "entities"
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({**old, "task": "tags"}))
    with pytest.raises(ValidationError, match="task"):
        Manifest.read(tmp_path)


def test_other_unknown_keys_are_still_refused(tmp_path: Path) -> None:
    old = {**json.loads(_manifest().model_dump_json()), "pooling_in_grpah": True}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(old))
    with pytest.raises(ValidationError, match="pooling_in_grpah"):
        Manifest.read(tmp_path)
