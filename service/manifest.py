"""The model directory format, shared by the exporter (writer) and the runtime (reader).

A model directory holds `manifest.json`, the ONNX graph of every variant, `tokenizer.json`
and the HF `config.json`. The manifest is the contract: the runtime trusts nothing that is
not described here, and checks every file against its recorded sha256 before loading.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.kinds import ModelKind

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
# Fields older exporters wrote that no reader uses any more.
RETIRED_KEYS = frozenset({"pooling_in_graph"})
# Kinds older exporters wrote under another name: a token classifier was "tokens".
RENAMED_KINDS = {"tokens": "entities"}

Precision = Literal["fp32", "int8", "fp16"]
Pooling = Literal["mean", "cls"]


class VariantInfo(BaseModel):
    """One ONNX graph of the model and the parity figures it passed at export time."""

    model_config = ConfigDict(extra="forbid")

    file: str
    precision: Precision
    recipe: str = ""
    verification: dict[str, float] = Field(default_factory=dict)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str
    task: ModelKind
    architecture: str
    max_length: int
    inputs: list[str]
    output: str
    pad_token_id: int = 0
    labels: list[str] | None = None
    multi_label: bool = False
    # The model takes text pairs: a cross-encoder (task rerank, one logit), or a classifier
    # trained on pairs (NLI, paraphrase), exported with --pairs and verified on pairs.
    pairs: bool = False
    # The model answers the requests of its task that name none, when several of that task are
    # served (service/defaults.py); BERTSERVE_DEFAULT_MODELS overrides it.
    default: bool = False
    dimension: int | None = None
    # Pooling runs inside the graph (always): the runtime only normalises and truncates.
    pooling: Pooling | None = None
    # Embedding models: the graph's per-token output (last hidden state), for late chunking; None
    # for other tasks and for exports made before it existed.
    token_output: str | None = None
    variants: dict[str, VariantInfo]
    files: dict[str, str] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    evaluation: dict[str, float | int | str] = Field(default_factory=dict)
    created_at: str = ""

    @model_validator(mode="before")
    @classmethod
    def _read_older_manifests(cls, data: Any) -> Any:
        """Manifests written by older exporters load: a retired field is dropped (it never
        carried a choice: `pooling_in_graph` was always true), a renamed kind is read under
        its name."""
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in RETIRED_KEYS}
            if isinstance(data.get("task"), str):
                data["task"] = RENAMED_KINDS.get(data["task"], data["task"])
        return data

    def write(self, directory: Path) -> None:
        (directory / MANIFEST_FILE).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls.model_validate_json((directory / MANIFEST_FILE).read_bytes())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
