"""`chunk_tokens` on /embed: chunks late-chunked from their window's token states, through the
app, against a reference built here: the windows Hugging Face's tokenizer gives (with their
offsets), each window through PyTorch (fp32) or through the int8 graph's own token output
(int8: one window a batch, as the service runs it in this test), and the mean of the states
of the tokens that fall inside the chunk's span, in the window the chunk names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from service.manifest import Manifest
from tests.integration.conftest import Client
from tests.integration.test_long_inputs import MAX_LENGTH, STRIDE, TEXTS, long_repo, served, unit

__all__ = ["long_repo", "served"]  # the fixtures, shared with test_long_inputs.py
CHUNK = 16


def hf_windows(ckpt: Path, text: str, stride: int | None) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
    """Each window: its ids, offsets and special-token flags, as Hugging Face's tokenizer gives them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    found = tokenizer(
        text,
        return_overflowing_tokens=stride is not None,
        stride=stride or 0,
        truncation=True,
        max_length=MAX_LENGTH,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    if stride is None:
        return [(found["input_ids"], found["offset_mapping"], found["special_tokens_mask"])]
    return list(zip(found["input_ids"], found["offset_mapping"], found["special_tokens_mask"], strict=True))


def window_states(variant: str, repo: tuple[Path, Path, Path], ids: list[int]) -> np.ndarray:
    """One window's token states: PyTorch's last hidden state, or the int8 graph's token output."""
    if variant == "int8":
        model_dir = repo[2] / "long-emb"
        manifest = Manifest.read(model_dir)
        assert manifest.token_output is not None
        session = ort.InferenceSession(
            str(model_dir / manifest.variants["int8"].file), providers=["CPUExecutionProvider"]
        )
        row = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": row, "attention_mask": np.ones_like(row), "token_type_ids": np.zeros_like(row)}
        return np.asarray(session.run([manifest.token_output], {n: feeds[n] for n in manifest.inputs})[0][0])
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(repo[1])).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out.last_hidden_state[0].double().numpy()


async def test_late_chunks_equal_the_reference(
    served: tuple[httpx.AsyncClient, str], long_repo: tuple[Path, Path, Path]
) -> None:
    client, variant = served
    texts = list(TEXTS.values())
    for stride in (STRIDE, None):
        extra = {} if stride is None else {"stride": stride}
        body = {"inputs": texts, "model": "long-emb", "chunk_tokens": CHUNK, **extra}
        r = await client.post("/embed", json=body)
        assert r.status_code == 200, r.text
        found = r.json()
        # The sentence embedding stays what it is: the graph's pooled output, windows pooled as without chunks.
        plain = (await client.post("/embed", json={k: v for k, v in body.items() if k != "chunk_tokens"})).json()
        np.testing.assert_allclose(found["embeddings"], plain["embeddings"], atol=1e-6)
        assert found["usage"] == plain["usage"] and found["windows"] == plain.get("windows", found["windows"])
        for text, chunks in zip(texts, found["chunks"], strict=True):
            windows = hf_windows(long_repo[1], text, stride)
            states = {}
            for chunk in chunks:
                piece = text[chunk["start"] : chunk["end"]]
                assert piece and piece == piece.strip()
                k = chunk["window"]
                ids, offsets, special = windows[k]
                if k not in states:
                    states[k] = window_states(variant, long_repo, ids)
                inside = [
                    i
                    for i, ((a, b), s) in enumerate(zip(offsets, special, strict=True))
                    if not s and chunk["start"] <= a and b <= chunk["end"]
                ]
                assert inside, chunk
                want = unit(states[k][inside].mean(axis=0))
                assert float(np.asarray(chunk["embedding"]) @ want) >= 0.9999, (
                    variant,
                    stride,
                    text[:30],
                    chunk["start"],
                )
            # Together the chunks read the windows' tokens once each: from the first to the last.
            first = next(o for o, s in zip(windows[0][1], windows[0][2], strict=True) if not s)
            last = [o for o, s in zip(windows[-1][1], windows[-1][2], strict=True) if not s][-1]
            assert (chunks[0]["start"], chunks[-1]["end"]) == (first[0], last[1])


async def test_chunk_tokens_needs_a_model_exported_with_token_states(
    make_client: Client, long_repo: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """An embedding model exported before token states existed (no `token_output` in its
    manifest) still serves, and refuses chunk_tokens in one line naming the field."""
    old = tmp_path / "models" / "old-emb"
    shutil.copytree(long_repo[2] / "long-emb", old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("token_output")
    (old / "manifest.json").write_text(json.dumps({**manifest, "name": "old-emb"}))
    async with make_client(models=tmp_path / "models") as client:
        assert (await client.post("/embed", json={"inputs": "a film"})).status_code == 200
        r = await client.post("/embed", json={"inputs": "a film", "chunk_tokens": 8})
        assert r.status_code == 422 and r.json()["error"]["param"] == "chunk_tokens", r.text
        assert "exported without token states" in r.json()["error"]["message"]
        r = await client.post("/embed", json={"inputs": "a film", "chunk_tokens": 0})
        assert r.status_code == 422 and "chunk_tokens" in r.text
