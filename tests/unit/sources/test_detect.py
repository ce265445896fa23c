"""The task read from a checkpoint folder's files, for each class of architecture, and the
one-line refusals. The folders are written by hand (config.json and a weights file): detection
reads the files, never the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.sources.detect import SUPPORTED, SourceError, detect

TYPES = {"Bert": "bert", "DistilBert": "distilbert", "Roberta": "roberta", "XLMRoberta": "xlm-roberta"}


def folder(root: Path, name: str, arch: str | None, labels: int = 3, **extra: Any) -> Path:
    path = root / name
    path.mkdir(parents=True)
    prefix = next((p for p in sorted(TYPES, key=len, reverse=True) if arch and arch.startswith(p)), "Bert")
    config: dict[str, Any] = {"model_type": TYPES[prefix], **extra}
    if arch is not None:
        config["architectures"] = [arch]
    config["id2label"] = {str(i): f"label_{i}" for i in range(labels)}
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "tokenizer.json").write_text("{}")
    return path


def sentence_transformers(path: Path, pooling: str) -> Path:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    modes = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
    config = {f"pooling_mode_{m}": m == pooling for m in modes}
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **config}))
    return path


@pytest.mark.parametrize("prefix", list(TYPES))
def test_a_sequence_classifier_classifies(tmp_path: Path, prefix: str) -> None:
    path = folder(tmp_path, "sentiment", f"{prefix}ForSequenceClassification", labels=2)
    assert detect(path, "sentiment").task == "classify"


@pytest.mark.parametrize("prefix", list(TYPES))
def test_a_token_classifier_serves_entities(tmp_path: Path, prefix: str) -> None:
    path = folder(tmp_path, "ner", f"{prefix}ForTokenClassification", labels=7)
    assert detect(path, "ner").task == "entities"


def test_one_output_with_crossencoder_config_reranks(tmp_path: Path) -> None:
    path = folder(tmp_path, "scorer", "BertForSequenceClassification", labels=1)
    (path / "config_sentence_transformers.json").write_text(json.dumps({"model_type": "CrossEncoder"}))
    assert detect(path, "scorer").task == "rerank"


def test_one_output_with_crossencoder_keys_in_config_reranks(tmp_path: Path) -> None:
    path = folder(
        tmp_path,
        "scorer",
        "BertForSequenceClassification",
        labels=1,
        sbert_ce_default_activation_function="torch.nn.modules.activation.Sigmoid",
    )
    assert detect(path, "scorer").task == "rerank"


@pytest.mark.parametrize("name", ["cross-encoder/ms-marco-MiniLM-L-6-v2", "BAAI/bge-reranker-base"])
def test_one_output_named_as_a_crossencoder_reranks(tmp_path: Path, name: str) -> None:
    path = folder(tmp_path, "snapshot", "XLMRobertaForSequenceClassification", labels=1)
    assert detect(path, name).task == "rerank"


def test_one_output_without_marks_asks_for_the_task(tmp_path: Path) -> None:
    path = folder(tmp_path, "scorer", "BertForSequenceClassification", labels=1)
    with pytest.raises(SourceError) as refused:
        detect(path, "scorer")
    assert "\n" not in str(refused.value)
    assert "pass --task rerank" in str(refused.value) and "--task classify" in str(refused.value)


@pytest.mark.parametrize(("pooling", "served"), [("mean_tokens", "mean"), ("cls_token", "cls")])
def test_a_sentence_transformers_folder_embeds_with_its_pooling(tmp_path: Path, pooling: str, served: str) -> None:
    path = sentence_transformers(folder(tmp_path, "st", "BertModel"), pooling)
    found = detect(path, "st")
    assert (found.task, found.pooling, found.warning) == ("embed", served, None)


def test_a_pooling_not_served_is_refused(tmp_path: Path) -> None:
    path = sentence_transformers(folder(tmp_path, "st", "BertModel"), "max_tokens")
    with pytest.raises(SourceError, match=r"pooling max_tokens is not served: supported are mean, cls$"):
        detect(path, "st")


@pytest.mark.parametrize("arch", ["BertModel", "RobertaForMaskedLM", "BertForPreTraining", None])
def test_a_plain_encoder_embeds_with_mean_pooling_and_a_warning(tmp_path: Path, arch: str | None) -> None:
    found = detect(folder(tmp_path, "encoder", arch), "encoder")
    assert (found.task, found.pooling) == ("embed", "mean")
    assert found.warning == (
        "encoder: no head and no sentence-transformers pooling: served as embeddings with mean pooling "
        "(pass --task to choose)"
    )


def test_the_task_given_wins(tmp_path: Path) -> None:
    path = sentence_transformers(folder(tmp_path, "st", "BertForSequenceClassification"), "cls_token")
    assert (detect(path, "st", "embed").task, detect(path, "st", "embed").pooling) == ("embed", "cls")
    assert detect(path, "st", "classify").task == "classify"


@pytest.mark.parametrize("arch", ["BertForQuestionAnswering", "DistilBertForMultipleChoice"])
def test_an_unsupported_head_is_refused_in_one_line(tmp_path: Path, arch: str) -> None:
    path = folder(tmp_path, "qa", arch)
    with pytest.raises(SourceError) as refused:
        detect(path, "qa")
    assert str(refused.value) == f"unsupported architecture {arch} in {path}: {SUPPORTED}"


def test_an_unsupported_architecture_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gpt"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "vocab.txt").write_text("[PAD]")
    with pytest.raises(SourceError) as refused:
        detect(path, "gpt")
    assert str(refused.value) == (
        f"unsupported architecture GPT2LMHeadModel in {path}: supported are bert, distilbert, roberta, "
        "xlm-roberta checkpoints with a sequence-classification head, a token-classification head or none, "
        "and sentence-transformers folders"
    )


def test_a_folder_without_weights_is_refused(tmp_path: Path) -> None:
    path = folder(tmp_path, "empty", "BertModel")
    (path / "model.safetensors").unlink()
    with pytest.raises(SourceError, match=r"has no model weights \(model.safetensors, pytorch_model.bin"):
        detect(path, "empty")


def test_a_folder_without_a_tokenizer_is_refused(tmp_path: Path) -> None:
    path = folder(tmp_path, "bare", "BertModel")
    (path / "tokenizer.json").unlink()
    with pytest.raises(SourceError, match=r"has no tokenizer \(tokenizer.json or vocab.txt\)$"):
        detect(path, "bare")
