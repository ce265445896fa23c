"""Random-weight BERT classifiers for the benchmark, built once into `.build/` and reused.

Weights come from a fixed seed and a 2-label head: what is measured is the cost of a model
of that shape, not its answers. No hub download: the tokenizer is the bundled
all-MiniLM-L6-v2's (uncased WordPiece, bert-base-uncased's vocabulary). The graph is made by
the project's own `bertserve export`, so the bench serves what a user would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import procs

SEED = 0
LABELS = ("negative", "positive")


@dataclass(frozen=True)
class RandomBert:
    name: str
    config: dict[str, Any]  # BertConfig's fields
    flags: tuple[str, ...]  # `bertserve export` options
    folder: str  # under .build/

    def _key(self) -> str:
        """Everything the built model depends on: a change to any of it is a new folder, and
        a folder that exists is never rebuilt (delete it to force it)."""
        from importlib import metadata

        versions = {pkg: metadata.version(pkg) for pkg in ("torch", "transformers", "onnxruntime")}
        recipe = {"config": self.config, "seed": SEED, "labels": LABELS, "flags": self.flags, "versions": versions}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]

    def models_dir(self) -> Path:
        """A models folder holding this one model only (what the service is started on)."""
        return procs.REPO / ".build" / self.folder / self._key() / "models"

    def model_dir(self) -> Path:
        return self.models_dir() / self.name

    def _write_checkpoint(self, out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

        from models.build import minilm_checkpoint

        torch.manual_seed(SEED)
        head: dict[str, Any] = {
            "num_labels": len(LABELS),
            "id2label": dict(enumerate(LABELS)),
            "label2id": {label: i for i, label in enumerate(LABELS)},
        }
        # Written aside and renamed, so an interrupted build never leaves a checkpoint that looks whole.
        staging = out.parent / f".{out.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        # Weights are drawn in the model's constructor, right after the seed: the same every build.
        BertForSequenceClassification(BertConfig(**self.config, **head)).save_pretrained(str(staging))
        AutoTokenizer.from_pretrained(str(minilm_checkpoint()), use_fast=True).save_pretrained(str(staging))
        staging.rename(out)

    def ensure(self, log: bool = True) -> Path:
        """The model folder, built first if it is missing."""
        target = self.model_dir()
        if (target / "manifest.json").is_file():
            return target
        started = time.perf_counter()
        checkpoint = target.parent.parent / "checkpoint"
        if not checkpoint.is_dir():
            if log:
                print(f"{self.name}: random-weight checkpoint (seed {SEED}) -> {checkpoint}", file=sys.stderr)
            self._write_checkpoint(checkpoint)
        cmd = [sys.executable, "-m", "service", "export", str(checkpoint), str(target), *self.flags, "--force"]
        if log:
            print(f"{self.name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        subprocess.run(cmd, cwd=procs.REPO, check=True)
        if log:
            print(f"{self.name}: built in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
        return target
