"""Inspect and load a local Hugging Face checkpoint of the BERT family."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.export.errors import ExportError
from service.export.tf_weights import TF_WEIGHTS, check_config, load_tf_model

SUPPORTED = ("bert", "distilbert", "roberta", "xlm-roberta")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    model_type: str
    # The file the weights are read from: PyTorch's when there are both PyTorch and
    # TensorFlow weights (`ignored` then names tf_model.h5), tf_model.h5 when it is alone.
    weights: str = WEIGHT_FILES[0]
    ignored: str | None = None

    @property
    def tensorflow(self) -> bool:
        return self.weights == TF_WEIGHTS

    @property
    def input_names(self) -> list[str]:
        """DistilBERT takes no segment ids; RoBERTa's single segment makes them a constant."""
        names = ["input_ids", "attention_mask"]
        if self.model_type == "bert" and int(self.config.get("type_vocab_size", 2)) > 1:
            names.append("token_type_ids")
        return names

    @property
    def has_classification_head(self) -> bool:
        archs = self.config.get("architectures") or []
        return any(a.endswith("ForSequenceClassification") for a in archs)

    @property
    def has_token_classification_head(self) -> bool:
        archs = self.config.get("architectures") or []
        return any(a.endswith("ForTokenClassification") for a in archs)

    @property
    def num_labels(self) -> int:
        """Outputs of the classification head, as transformers counts them (2 when unsaid)."""
        id2label = self.config.get("id2label") or {}
        return len(id2label) if id2label else int(self.config.get("num_labels", self.config.get("_num_labels", 2)))

    def check_head(self, task: str) -> None:
        """classify needs a sequence-classification head; rerank one with exactly one output;
        entities a token-classification head."""
        if task == "entities":
            if not self.has_token_classification_head:
                raise ExportError(
                    f"{self.path} has no token-classification head: --task entities needs a *ForTokenClassification "
                    "checkpoint"
                )
            return
        if task not in ("classify", "rerank"):
            return
        if not self.has_classification_head:
            if self.has_token_classification_head:
                hint = "it is a token classifier: export it with --task entities"
            elif task == "classify":
                hint = "export it with --task embed"
            else:
                hint = "--task rerank needs a cross-encoder"
            raise ExportError(f"{self.path} has no sequence-classification head: {hint}")
        if task == "rerank" and self.num_labels != 1:
            raise ExportError(
                f"{self.path} has a classification head with {self.num_labels} outputs: --task rerank needs a "
                "cross-encoder with one output (a pair classifier exports with --task classify --pairs)"
            )

    def max_length(self, requested: int | None) -> int:
        limit = int(self.config.get("max_position_embeddings", 512))
        if self.model_type in ("roberta", "xlm-roberta"):
            limit -= 2  # positions start after the padding index
        st_config = self.path / "sentence_bert_config.json"
        default = limit
        if st_config.is_file():
            default = int(json.loads(st_config.read_text()).get("max_seq_length", limit))
        value = requested or default
        if value > limit:
            raise ExportError(f"--max-length {value} exceeds the model's {limit} positions")
        return value

    def sentence_transformers_pooling(self) -> str | None:
        pooling_config = self.path / "1_Pooling" / "config.json"
        if not pooling_config.is_file():
            return None
        cfg = json.loads(pooling_config.read_text())
        if cfg.get("pooling_mode_mean_tokens"):
            return "mean"
        if cfg.get("pooling_mode_cls_token"):
            return "cls"
        raise ExportError(f"unsupported pooling in {pooling_config}: only mean and cls are served")


def inspect_checkpoint(path: Path) -> Checkpoint:
    if not path.is_dir():
        raise ExportError(f"{path} is not a directory")
    config_file = path / "config.json"
    found = [w for w in (*WEIGHT_FILES, TF_WEIGHTS) if (path / w).is_file()]
    if not config_file.is_file() or not found:
        raise ExportError(
            f"{path} is not a Hugging Face checkpoint (needs config.json and model weights: "
            f"{', '.join(WEIGHT_FILES)} or {TF_WEIGHTS})"
        )
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ExportError(f"{config_file} is not valid JSON: {exc}") from exc
    model_type = str(config.get("model_type", ""))
    if model_type not in SUPPORTED:
        raise ExportError(f"unsupported architecture {model_type or 'unknown'!r}: supported are {', '.join(SUPPORTED)}")
    if not (path / "tokenizer.json").is_file() and not (path / "vocab.txt").is_file():
        raise ExportError(f"{path} has no tokenizer (tokenizer.json or vocab.txt)")
    ckpt = Checkpoint(path=path, config=config, model_type=model_type, weights=found[0])
    if ckpt.tensorflow:
        check_config(model_type, config)  # a TF class the name tables cover, computing what TF did
    elif TF_WEIGHTS in found:
        ckpt.ignored = TF_WEIGHTS
    return ckpt


def load_torch_model(ckpt: Checkpoint, task: str) -> Any:
    """Load the PyTorch model in eval mode with the eager attention, which exports cleanly."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

    ckpt.check_head(task)
    if ckpt.tensorflow:
        # The checkpoint's own class, every weight accounted for; an embedding export of a
        # classifier then keeps its encoder, as AutoModel does with PyTorch weights.
        model = load_tf_model(ckpt.path, ckpt.model_type, ckpt.config)
        if task == "embed":
            model = model.base_model
    else:
        cls = {"embed": AutoModel, "entities": AutoModelForTokenClassification}.get(
            task, AutoModelForSequenceClassification
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(str(ckpt.path), attn_implementation="eager")
    if task == "rerank" and int(model.config.num_labels) != 1:
        raise ExportError(
            f"{ckpt.path}: the loaded head has {model.config.num_labels} outputs: --task rerank needs one"
        )
    return model.eval()


def load_tokenizer(ckpt: Checkpoint) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ckpt.path), use_fast=True)
    if not tok.is_fast:
        raise ExportError(f"{ckpt.path}: no fast tokenizer could be built")
    return tok
