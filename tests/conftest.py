from __future__ import annotations

from pathlib import Path

import pytest

from service.export.pipeline import ExportOptions, export_checkpoint
from tests.tiny import make_checkpoint


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with a tiny classifier (with int8) and a tiny embedding model."""
    root = tmp_path_factory.mktemp("tiny")
    repo = root / "models"
    repo.mkdir()
    clf = make_checkpoint(root / "ckpt-clf", "bert", head=True)
    emb = make_checkpoint(root / "ckpt-emb", "bert", head=False, seed=1)
    export_checkpoint(ExportOptions(clf, repo / "tiny-clf", "classify", int8=True), log=lambda _: None)
    export_checkpoint(ExportOptions(emb, repo / "tiny-emb", "embed"), log=lambda _: None)
    return repo
