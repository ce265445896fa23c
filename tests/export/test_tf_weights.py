"""The Keras -> PyTorch name tables, against the names TensorFlow itself writes.

keras_names.json (made by tests/fixtures/tf/make_fixtures.py with TensorFlow) lists, for every
TF class the tables cover, each weight name and shape `save_pretrained` wrote. Here a file with
those names and random values is written with h5py, loaded, and every PyTorch parameter must
hold exactly the value stored under its Keras name (transposed for Dense kernels).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from service.export.checkpoint import inspect_checkpoint, load_torch_model
from service.export.errors import ExportError
from service.export.tf_weights import TF_WEIGHTS, expected_weights, load_tf_model, model_class

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
CLASSES: dict[str, Any] = json.loads((FIXTURES / "keras_names.json").read_text())["classes"]


def write_keras_file(path: Path, weights: dict[str, np.ndarray]) -> None:
    """A weights file laid out as Keras writes one: a group per top-level layer (the name's
    second part), each listing its weights' full names."""
    layers: dict[str, list[str]] = {}
    for name in weights:
        layers.setdefault(name.split("/")[1], []).append(name)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        for layer, names in layers.items():
            group = f.create_group(layer)
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name in names:
                group.create_dataset(name, data=weights[name])


@pytest.mark.parametrize("tf_class", sorted(CLASSES))
def test_every_parameter_comes_from_its_keras_weight(tmp_path: Path, tf_class: str) -> None:
    spec = CLASSES[tf_class]
    rng = np.random.default_rng(0)
    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in spec["weights"].items()}
    write_keras_file(tmp_path / TF_WEIGHTS, weights)
    (tmp_path / "config.json").write_text(json.dumps(spec["config"]))

    model = load_tf_model(tmp_path, spec["config"]["model_type"], spec["config"])

    assert type(model).__name__ == tf_class.removeprefix("TF")
    arch, head = model_class(spec["config"]["model_type"], spec["config"]["architectures"])
    table = expected_weights(arch, head, layers=1)
    params = dict(model.named_parameters())
    assert len(table) == len(params) == len(weights)
    by_short = {name.split("/", 1)[1].removesuffix(":0"): value for name, value in weights.items()}
    for keras, (torch_name, transposed) in table.items():
        stored = by_short[keras].T if transposed else by_short[keras]
        assert torch.equal(params[torch_name].detach(), torch.from_numpy(stored)), (keras, torch_name)


def test_kernels_are_transposed_and_norms_mapped() -> None:
    table = expected_weights(*model_class("bert", ["BertForSequenceClassification"]), layers=2)
    assert table["bert/encoder/layer_._1/intermediate/dense/kernel"] == (
        "bert.encoder.layer.1.intermediate.dense.weight",
        True,
    )
    assert table["bert/embeddings/LayerNorm/gamma"] == ("bert.embeddings.LayerNorm.weight", False)
    assert table["bert/embeddings/LayerNorm/beta"] == ("bert.embeddings.LayerNorm.bias", False)
    assert table["bert/embeddings/word_embeddings/weight"] == ("bert.embeddings.word_embeddings.weight", False)
    assert table["bert/embeddings/position_embeddings/embeddings"] == (
        "bert.embeddings.position_embeddings.weight",
        False,
    )
    assert table["classifier/kernel"] == ("classifier.weight", True)


@pytest.mark.parametrize(
    ("model_type", "architectures", "message"),
    [
        ("bert", ["BertForMaskedLM"], "tf_model.h5 of TFBertForMaskedLM is not supported: TFBertModel, "),
        ("bert", ["RobertaForSequenceClassification"], "of TFRobertaForSequenceClassification is not supported"),
    ],
    ids=["masked-lm", "other-architecture"],
)
def test_classes_without_a_table_are_refused_before_loading(
    tmp_path: Path, model_type: str, architectures: list[str], message: str
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "bert-classifier", ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "model_type": model_type, "architectures": architectures}))
    with pytest.raises(ExportError, match=message):
        inspect_checkpoint(ckpt)


def test_a_folder_with_both_uses_the_pytorch_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "bert-classifier", ckpt)
    assert inspect_checkpoint(ckpt).tensorflow
    load_torch_model(inspect_checkpoint(ckpt), "classify").save_pretrained(str(ckpt))
    both = inspect_checkpoint(ckpt)
    assert (both.weights, both.ignored, both.tensorflow) == ("model.safetensors", TF_WEIGHTS, False)


def test_an_embedding_export_of_a_classifier_keeps_its_encoder() -> None:
    """As AutoModel does with PyTorch weights: the encoder, every weight from the file."""
    ckpt = inspect_checkpoint(FIXTURES / "bert-classifier")
    classifier = load_torch_model(ckpt, "classify")
    encoder = load_torch_model(ckpt, "embed")
    assert type(encoder).__name__ == "BertModel"
    for name, param in encoder.named_parameters():
        assert torch.equal(param, classifier.get_parameter(f"bert.{name}")), name


def test_a_roberta_padding_index_tensorflow_does_not_use_is_refused(tmp_path: Path) -> None:
    """TF RoBERTa numbers positions after index 1 whatever the config says; PyTorch follows
    pad_token_id. Were they to differ, PyTorch would not compute what TF did."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "roberta-classifier", ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "pad_token_id": 0}))
    with pytest.raises(ExportError, match=r"but config\.json's pad_token_id is 0"):
        inspect_checkpoint(ckpt)


def test_with_no_class_named_a_heads_weights_are_left_over(tmp_path: Path) -> None:
    """A config.json naming no class is taken for the base model: the head's weights refuse it."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "bert-classifier", ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    del config["architectures"]
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"weight tf_bert_for_sequence_classification/classifier/kernel:0 has no"):
        load_torch_model(inspect_checkpoint(ckpt), "embed")
