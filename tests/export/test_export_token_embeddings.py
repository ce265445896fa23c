"""An embedding export's second output, the last hidden state (late chunking): in the graph,
in the manifest, verified at export, and what PyTorch gives, run as the service runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModel

from service.export.checkpoint import inspect_checkpoint, load_torch_model
from service.export.errors import ExportError
from service.export.exporter import ExportOptions, export_checkpoint
from service.export.graph import EmbeddingGraph, export_onnx
from service.export.verify import (
    FP32_MIN_COSINE,
    VARIANT_TOKEN_MEAN_COSINE,
    VARIANT_TOKEN_MIN_COSINE,
    variant_gate,
)
from service.manifest import Manifest
from service.runtime.session import CPU, OnnxSession, SessionError
from service.runtime.tokenizer import TextEncoder
from tests.recipes import edit_exports, negate
from tests.tiny import make_checkpoint

quiet = {"log": lambda _: None}
# Fresh text, not the verification set: lengths from 3 to 60-odd tokens, so every batch pads.
TEXTS = [
    "a",
    "late chunking pools a chunk from the tokens of its whole window",
    "short",
    " ".join(["the service embeds long documents in windows"] * 8),
    "Ça va? 日本語 and ñ",
]


@pytest.fixture(scope="module")
def embed_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Manifest]:
    """A tiny embedding model exported with int8 (checkpoint, model directory, manifest)."""
    root = tmp_path_factory.mktemp("late")
    ckpt = make_checkpoint(root / "ckpt", "bert", head=False, seed=3)
    out = root / "model"
    return ckpt, out, export_checkpoint(ExportOptions(ckpt, out, "embed", int8=True), **quiet)


def test_the_embedding_graph_has_the_pooled_and_the_per_token_output(
    embed_export: tuple[Path, Path, Manifest],
) -> None:
    _, out, manifest = embed_export
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["sentence_embedding", "token_embeddings"]
    dims = [d.dim_value or d.dim_param for d in graph.output[1].type.tensor_type.shape.dim]
    assert len(dims) == 3 and dims[2] == 32 and all(isinstance(d, str) for d in dims[:2])  # (batch, sequence, 32)
    assert manifest.output == "sentence_embedding"
    assert manifest.token_output == "token_embeddings"
    assert Manifest.read(out).token_output == "token_embeddings"


def test_the_token_figures_are_recorded_for_every_variant(embed_export: tuple[Path, Path, Manifest]) -> None:
    _, _, manifest = embed_export
    assert set(manifest.variants) == {"fp32", "int8"}  # int8 of a tiny model passes both gates
    for name, info in manifest.variants.items():
        figures = info.verification
        assert figures["tokens"] > figures["rows"] >= 200  # every real token of the verification texts
        assert figures["token_cosine_min"] <= figures["token_cosine_mean"] <= 1.0 + 1e-6
        assert manifest.evaluation[f"token_cosine_min_{name}"] == round(figures["token_cosine_min"], 6)
        assert manifest.evaluation[f"token_cosine_mean_{name}"] == round(figures["token_cosine_mean"], 6)
        assert variant_gate("embed", figures).passed
    assert manifest.variants["fp32"].verification["token_cosine_min"] >= FP32_MIN_COSINE


def test_the_served_token_output_is_pytorchs_last_hidden_state(embed_export: tuple[Path, Path, Manifest]) -> None:
    """Independent of the verifier: fresh texts, one mixed-length batch through OnnxSession,
    each row's real tokens against the PyTorch model run on that row alone (no padding)."""
    ckpt, out, manifest = embed_export
    rows = TextEncoder(out / "tokenizer.json", manifest.max_length).encode(TEXTS, truncate=True)
    session = OnnxSession(
        out / "model.onnx", output=manifest.output, pad_token_id=manifest.pad_token_id, providers=[CPU], threads=1
    )
    pooled = session.run(rows)
    pooled_again, tokens = session.run_outputs(rows, [manifest.output, "token_embeddings"])
    assert tokens.shape == (len(rows), max(len(r) for r in rows), 32)
    np.testing.assert_array_equal(pooled, pooled_again)

    model = AutoModel.from_pretrained(str(ckpt)).eval()
    for i, row in enumerate(rows):
        ids = torch.from_numpy(row[None, :])
        with torch.inference_mode():
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].numpy()
        got = tokens[i, : len(row)]
        cosine = (got * hidden).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(hidden, axis=1))
        assert cosine.min() >= 0.9999
        np.testing.assert_allclose(pooled[i], hidden.mean(axis=0), atol=1e-4)  # the pooled output, as before


class PooledOnly(EmbeddingGraph):
    """The embedding graph as it was before its per-token output: the pooled vector alone."""

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return super().forward(input_ids, attention_mask, token_type_ids)[0]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_second_output_leaves_the_pooled_numbers_as_they_were(tmp_path: Path, pooling: str) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=False, seed=4)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    model = load_torch_model(inspect_checkpoint(ckpt), "embed")
    example = {n: np.ones((2, 4), dtype=np.int64) for n in names}
    both = EmbeddingGraph(model, names, pooling).eval()
    export_onnx(both, example, ["sentence_embedding", "token_embeddings"], tmp_path / "both.onnx", 128)
    pooled_only = PooledOnly(model, names, pooling).eval()
    export_onnx(pooled_only, example, ["sentence_embedding"], tmp_path / "pooled.onnx", 128)
    rows = TextEncoder(ckpt / "tokenizer.json", 128).encode(TEXTS, truncate=True)
    served = [
        OnnxSession(path, output="sentence_embedding", pad_token_id=0, providers=[CPU], threads=1).run(rows)
        for path in (tmp_path / "both.onnx", tmp_path / "pooled.onnx")
    ]
    np.testing.assert_array_equal(served[0], served[1])


def test_a_graph_without_the_output_asked_for_is_a_session_error(embed_export: tuple[Path, Path, Manifest]) -> None:
    _, out, manifest = embed_export
    session = OnnxSession(out / "model.onnx", output=manifest.output, pad_token_id=0, providers=[CPU], threads=1)
    with pytest.raises(SessionError, match="no output 'last_hidden_state'"):
        session.run_outputs([np.array([101, 102])], ["last_hidden_state"])


def test_wrong_token_embeddings_fail_the_export_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pooled output right, the per-token output not (negated): the fp32 gate refuses it."""
    edit_exports(monkeypatch, lambda model: negate(model, index=1))
    ckpt = make_checkpoint(tmp_path / "ckpt", "bert", head=False)
    with pytest.raises(ExportError, match="verification failed: fp32 token embedding cosine to PyTorch is -1"):
        export_checkpoint(ExportOptions(ckpt, tmp_path / "model", "embed"), **quiet)
    assert not (tmp_path / "model").exists()
    assert not any(p.name.startswith(".model") for p in tmp_path.iterdir())


def test_the_variant_gate_holds_the_token_embeddings_too() -> None:
    pooled = {"cosine_mean": 0.999, "cosine_min": 0.995}
    assert variant_gate("embed", pooled).passed  # figures of an export made before the token output
    # all-MiniLM-L6-v2's int8 as measured: it stays served
    measured = {**pooled, "token_cosine_mean": 0.9995, "token_cosine_min": 0.9936}
    assert variant_gate("embed", measured).passed
    floors = {**pooled, "token_cosine_mean": VARIANT_TOKEN_MEAN_COSINE, "token_cosine_min": VARIANT_TOKEN_MIN_COSINE}
    assert variant_gate("embed", floors).passed
    for figure in ("token_cosine_mean", "token_cosine_min"):
        failed = variant_gate("embed", {**floors, figure: floors[figure] - 0.001})
        assert not failed.passed and "token cosine mean" in failed.reason
