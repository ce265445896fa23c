"""Which task a checkpoint folder serves, read from its files (no torch, no transformers).

The rules, in order (the README's "Serving a checkpoint" says the same):
- `*ForSequenceClassification` -> classify; with one output and a cross-encoder's marks
  (sentence-transformers' CrossEncoder config, or a name with "cross-encoder" or "rerank")
  -> rerank. One output without those marks is ambiguous (a regression head or a
  cross-encoder): the user is asked for --task.
- `*ForTokenClassification` -> entities.
- a sentence-transformers folder (modules.json with a Pooling module) -> embed, with its pooling.
- an encoder without a head (`*Model`, `*ForMaskedLM`, `*ForPreTraining`) -> embed, mean
  pooling, with a warning.
Anything else is refused in one line naming what is supported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.kinds import ModelKind
from service.runtime.loader import ModelLoadError

ARCHITECTURES = ("bert", "distilbert", "roberta", "xlm-roberta")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # what the export can build a fast tokenizer from
SUPPORTED = (
    f"supported are {', '.join(ARCHITECTURES)} checkpoints with a sequence-classification head, a "
    "token-classification head or none, and sentence-transformers folders"
)
ENCODER_SUFFIXES = ("Model", "ForMaskedLM", "ForPreTraining")
CROSS_ENCODER_WORDS = ("cross-encoder", "crossencoder", "rerank")
POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


class SourceError(ModelLoadError):
    """A source that cannot be served: one line, exit code 2 (a load error like any other)."""


@dataclass(frozen=True)
class Detected:
    task: ModelKind
    pooling: str | None = None
    warning: str | None = None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path} cannot be read: {exc}") from exc


def check_checkpoint(path: Path) -> dict[str, Any]:
    """The config of a checkpoint folder of a supported architecture, or a one-line refusal."""
    if not (path / "config.json").is_file():
        raise SourceError(f"{path} is neither a Hugging Face checkpoint (config.json) nor a model directory")
    if not any((path / w).is_file() for w in WEIGHT_FILES):
        raise SourceError(f"{path} has no model weights ({', '.join(WEIGHT_FILES)})")
    if not any((path / t).is_file() for t in TOKENIZER_FILES):
        raise SourceError(f"{path} has no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise SourceError(f"{path / 'config.json'} is not a JSON object")
    model_type = str(config.get("model_type") or "unknown")
    if model_type not in ARCHITECTURES:
        archs = ", ".join(config.get("architectures") or []) or model_type
        raise SourceError(f"unsupported architecture {archs} in {path}: {SUPPORTED}")
    return config


def detect(path: Path, name: str, task: ModelKind | None = None) -> Detected:
    """The task (`task` when the user gave one) and, for embeddings, the pooling."""
    config = check_checkpoint(path)
    if task is not None:
        return Detected(task, sentence_transformers_pooling(path) if task == "embed" else None)
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return Detected(_sequence_task(path, name, config))
    if any(a.endswith("ForTokenClassification") for a in archs):
        return Detected("entities")
    pooling = sentence_transformers_pooling(path)
    if pooling is not None:
        return Detected("embed", pooling)
    if not archs or any(a.endswith(ENCODER_SUFFIXES) for a in archs):
        return Detected(
            "embed",
            "mean",
            f"{name}: no head and no sentence-transformers pooling: served as embeddings with mean pooling "
            "(pass --task to choose)",
        )
    raise SourceError(f"unsupported architecture {', '.join(archs)} in {path}: {SUPPORTED}")


def num_labels(config: dict[str, Any]) -> int:
    id2label = config.get("id2label") or {}
    return len(id2label) if id2label else int(config.get("num_labels", 2))


def _sequence_task(path: Path, name: str, config: dict[str, Any]) -> ModelKind:
    if num_labels(config) != 1:
        return "classify"
    if is_cross_encoder(path, name, config):
        return "rerank"
    raise SourceError(
        f"{name} has a classification head with one output and no cross-encoder configuration: pass "
        "--task rerank (a cross-encoder scoring query-text pairs) or --task classify (one score per text)"
    )


def is_cross_encoder(path: Path, name: str, config: dict[str, Any]) -> bool:
    """sentence-transformers' marks of a CrossEncoder (its own config file, or the keys it
    writes into config.json), or the name the model is known by."""
    st_config = path / "config_sentence_transformers.json"
    if st_config.is_file() and read_json(st_config).get("model_type") == "CrossEncoder":
        return True
    if "sbert_ce_default_activation_function" in config or "sentence_transformers" in config:
        return True
    return any(word in name.lower() for word in CROSS_ENCODER_WORDS)


def sentence_transformers_pooling(path: Path) -> str | None:
    """The pooling of a sentence-transformers folder (its Pooling module's config), None when
    there is none; a pooling the service does not serve is refused."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return None
    modules = read_json(modules_file)
    folders = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")]
    if not folders:
        return None
    cfg = read_json(path / folders[0] / "config.json")
    modes = [mode for key, mode in POOLING.items() if cfg.get(key)]
    others = [k.removeprefix("pooling_mode_") for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
    if len(others) != 1 or not modes:
        raise SourceError(f"{path}: pooling {'+'.join(others) or 'none'} is not served: supported are mean, cls")
    return modes[0]
