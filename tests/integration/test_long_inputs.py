"""Long texts read whole with `stride` on /classify, /embed and /v1/embeddings, through the
app, against a reference built here: the windows Hugging Face's tokenizer gives with
`return_overflowing_tokens=True` (token for token), run through the PyTorch model one window
at a time, and pooled as the service says it pools (mean logits; max of the windows'
probabilities; the mean of the windows' vectors weighted by their tokens not shared with the
window before). The tiny models read 128 tokens; the int8 graphs are held to the same graph
run by onnxruntime on the same windows (one window a batch, as dynamic quantization scales
by the batch), and to PyTorch within the int8 gate."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from service.export.exporter import ExportOptions, export_checkpoint
from service.manifest import Manifest
from service.runtime.tokenizer import TextEncoder
from tests.integration.conftest import Client, hold_runtime
from tests.sync import until_async
from tests.tiny import PAIR_INIT_RANGE, make_checkpoint

MAX_LENGTH, STRIDE = 128, 16
TEXTS = {
    "one window": "A short review: the film was fine.",
    "two windows": "word " * 150,
    "many windows": " ".join(f"sentence {i} of a long document, with commas; and more." for i in range(120)),
    "unicode": "Zoë Saldaña flew from São Paulo to Reykjavík — 東京タワー, Владимир, 🙂 émigré café. " * 40,
    "whitespace at edges": "\n\n  " + "   \t".join(["alpha beta", "gamma\n\ndelta", "epsilon  "] * 90) + "   \n",
}


@pytest.fixture(scope="module")
def long_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A classifier with logits of order 1 and an embedding model, each with int8; the
    classifier again as a pair classifier."""
    root = tmp_path_factory.mktemp("long")
    clf = make_checkpoint(root / "ckpt-clf", "bert", head=True, seed=5, init_range=PAIR_INIT_RANGE)
    emb = make_checkpoint(root / "ckpt-emb", "bert", head=False, seed=6)
    for ckpt, name, task in ((clf, "long-clf", "classify"), (emb, "long-emb", "embed")):
        export_checkpoint(ExportOptions(ckpt, root / "models" / name, task, int8=True), log=lambda _: None)
    # The classifier declared a pair classifier too (its BERT graph takes segment ids).
    pairs = root / "models" / "long-pairs"
    shutil.copytree(root / "models" / "long-clf", pairs)
    manifest = json.loads((pairs / "manifest.json").read_text())
    (pairs / "manifest.json").write_text(json.dumps({**manifest, "name": "long-pairs", "pairs": True}))
    return clf, emb, root / "models"


@pytest.fixture(params=["fp32", "int8"])
async def served(
    request: pytest.FixtureRequest, make_client: Client, long_repo: tuple[Path, Path, Path]
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    # int8: one window a batch, as the reference runs it (the activations' scale is the batch's).
    extra = {"max_batch_size": 1} if request.param == "int8" else {}
    async with make_client(models=long_repo[2], variant=request.param, **extra) as c:
        yield c, request.param


def hf_windows(ckpt: Path, text: str, stride: int = STRIDE) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    found = tokenizer(text, return_overflowing_tokens=True, stride=stride, truncation=True, max_length=MAX_LENGTH)
    return [list(ids) for ids in found["input_ids"]]


def torch_rows(ckpt: Path, windows: list[list[int]], head: bool) -> np.ndarray:
    """Each window alone through PyTorch: logits, or the mean of the token states."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    model = (AutoModelForSequenceClassification if head else AutoModel).from_pretrained(str(ckpt)).eval()
    rows = []
    with torch.no_grad():
        for ids in windows:
            out = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
            rows.append(out.logits[0] if head else out.last_hidden_state[0].mean(dim=0))
    return torch.stack(rows).double().numpy()


def onnx_rows(model_dir: Path, windows: list[list[int]]) -> np.ndarray:
    """Each window alone through the int8 graph."""
    manifest = Manifest.read(model_dir)
    session = ort.InferenceSession(str(model_dir / manifest.variants["int8"].file), providers=["CPUExecutionProvider"])
    rows = []
    for ids in windows:
        row = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": row, "attention_mask": np.ones_like(row), "token_type_ids": np.zeros_like(row)}
        rows.append(session.run(None, {n: feeds[n] for n in manifest.inputs})[0][0])
    return np.asarray(rows, dtype=np.float64)


def weights(windows: list[list[int]], stride: int = STRIDE) -> np.ndarray:
    content = np.array([len(w) - 2 for w in windows], dtype=np.float64)  # less [CLS] and [SEP]
    content[1:] -= stride
    return content


def reference(variant: str, repo: tuple[Path, Path, Path], text: str, head: bool) -> tuple[np.ndarray, int, int]:
    """The text's window rows as the reference computes them, its windows and its tokens."""
    ckpt = repo[0] if head else repo[1]
    windows = hf_windows(ckpt, text)
    if variant == "int8":
        rows = onnx_rows(repo[2] / ("long-clf" if head else "long-emb"), windows)
    else:
        rows = torch_rows(ckpt, windows, head)
    return rows, len(windows), sum(map(len, windows))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_windows_are_the_tokenizers_overflow_windows(long_repo: tuple[Path, Path, Path]) -> None:
    encoder = TextEncoder(long_repo[2] / "long-clf" / "tokenizer.json", MAX_LENGTH)
    splitter = encoder.token_windows()
    counts = set()
    for stride in (0, 1, STRIDE, 64, splitter.max_stride):
        splits = splitter.split(list(TEXTS.values()), stride)
        for text, split in zip(TEXTS.values(), splits, strict=True):
            want = hf_windows(long_repo[0], text, stride)
            assert [w.ids.tolist() for w in split.windows] == want, (stride, text[:40])
            counts.add(len(want))
    assert {1, 2} <= counts and max(counts) > 5


async def test_classify_with_stride_equals_the_reference(
    served: tuple[httpx.AsyncClient, str], long_repo: tuple[Path, Path, Path]
) -> None:
    client, variant = served
    texts = list(TEXTS.values())
    body = {"inputs": texts, "model": "long-clf", "stride": STRIDE}
    mean = (await client.post("/classify", json={**body, "function": "none"})).json()
    top = (await client.post("/classify", json={**body, "window_pooling": "max"})).json()
    labels = Manifest.read(long_repo[2] / "long-clf").labels or []
    total = 0
    for i, text in enumerate(texts):
        rows, count, tokens = reference(variant, long_repo, text, head=True)
        total += tokens
        assert mean["windows"][i] == top["windows"][i] == count
        got = {p["label"]: p["score"] for p in mean["predictions"][i]}
        assert np.abs(np.array([got[label] for label in labels]) - rows.mean(axis=0)).max() <= 1e-4, text[:40]
        probs = np.exp(rows - rows.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        got = {p["label"]: p["score"] for p in top["predictions"][i]}
        assert np.abs(np.array([got[label] for label in labels]) - probs.max(axis=0)).max() <= 1e-4, text[:40]
        if variant == "int8":  # and within the int8 gate of PyTorch's answer
            fp32 = torch_rows(long_repo[0], hf_windows(long_repo[0], text), head=True).mean(axis=0)
            assert np.argmax(fp32) == labels.index(mean["predictions"][i][0]["label"])
    assert mean["usage"]["input_tokens"] == total
    assert mean["truncated"] == [False] * len(texts) and mean["covered"] == [len(t) for t in texts]


async def test_embed_with_stride_equals_the_reference(
    served: tuple[httpx.AsyncClient, str], long_repo: tuple[Path, Path, Path]
) -> None:
    client, variant = served
    texts = list(TEXTS.values())
    r = await client.post("/embed", json={"inputs": texts, "model": "long-emb", "stride": STRIDE})
    assert r.status_code == 200, r.text
    body = r.json()
    openai = (await client.post("/v1/embeddings", json={"input": texts, "model": "long-emb", "stride": STRIDE})).json()
    total = 0
    for i, text in enumerate(texts):
        rows, count, tokens = reference(variant, long_repo, text, head=False)
        total += tokens
        assert body["windows"][i] == count
        w = weights(hf_windows(long_repo[1], text))
        want = unit(w @ rows / w.sum())
        got = np.asarray(body["embeddings"][i])
        assert float(got @ want) >= 0.9999, text[:40]
        assert float(np.asarray(openai["data"][i]["embedding"]) @ want) >= 0.9999
        if variant == "int8":
            fp32 = torch_rows(long_repo[1], hf_windows(long_repo[1], text), head=False)
            assert float(got @ unit(w @ fp32 / w.sum())) >= 0.99
    assert body["usage"]["input_tokens"] == openai["usage"]["prompt_tokens"] == total


async def test_a_text_in_one_window_is_answered_as_without_stride(
    make_client: Client, long_repo: tuple[Path, Path, Path]
) -> None:
    short = TEXTS["one window"]
    async with make_client(models=long_repo[2]) as client:
        for route, model in (("/classify", "long-clf"), ("/embed", "long-emb")):
            plain = (await client.post(route, json={"inputs": short, "model": model})).json()
            whole = (await client.post(route, json={"inputs": short, "model": model, "stride": STRIDE})).json()
            assert "windows" not in plain and whole.pop("windows") == [1]
            assert whole == plain, route


async def test_limits(make_client: Client, long_repo: tuple[Path, Path, Path]) -> None:
    document = "word " * 20_000  # 100,000 characters, 182 windows at 128 tokens with stride 16
    async with make_client(models=long_repo[2], max_windows=182) as client:
        read = await client.post("/embed", json={"inputs": document, "model": "long-emb", "stride": STRIDE})
        assert read.status_code == 200, read.text
        assert read.json()["windows"] == [182] and read.json()["covered"] == [len(document)]
        plain = await client.post("/embed", json={"inputs": document, "model": "long-emb"})
        assert plain.status_code == 422 and "BERTSERVE_MAX_INPUT_CHARS" in plain.text  # without stride: per text
        over = await client.post(
            "/classify", json={"inputs": ["short", document], "model": "long-clf", "stride": STRIDE, "top_k": 1}
        )
        assert over.status_code == 422 and over.json()["error"]["param"] == "inputs[1]"
        assert "BERTSERVE_MAX_WINDOWS" in over.json()["error"]["message"]
        for stride in (-1, 10_000):
            bad = await client.post("/classify", json={"inputs": "x", "model": "long-clf", "stride": stride})
            assert bad.status_code == 422 and bad.json()["error"]["param"] == "stride", bad.text
        pairs = {"model": "long-pairs", "stride": STRIDE}
        pair = await client.post("/classify", json={"inputs": [["a", document]], **pairs})
        assert pair.status_code == 422 and "BERTSERVE_MAX_INPUT_CHARS" in pair.text  # per text, as without stride
        pair = await client.post("/classify", json={"inputs": [["a", document[:5000]]], **pairs})
        assert pair.json()["truncated"] == [True] and pair.json()["windows"] == [1]  # pairs are cut
    async with make_client(models=long_repo[2], max_inputs=2, max_input_chars=60_000) as client:
        two = await client.post("/embed", json={"inputs": [document, document], "model": "long-emb", "stride": STRIDE})
        assert two.status_code == 422 and "BERTSERVE_MAX_INPUTS x BERTSERVE_MAX_INPUT_CHARS" in two.text


async def test_windows_take_room_in_the_queue_as_items(make_client: Client, long_repo: tuple[Path, Path, Path]) -> None:
    long, five = TEXTS["many windows"], "word " * 500
    windows = len(hf_windows(long_repo[0], long))
    assert len(hf_windows(long_repo[0], five)) == 5
    async with make_client(models=long_repo[2], max_batch_size=4, max_queue_items=windows) as client:
        body = {"model": "long-clf", "stride": STRIDE}
        served = client.app.state.bertserve.models["long-clf"]  # type: ignore[attr-defined]
        release = hold_runtime(served)
        running = asyncio.ensure_future(client.post("/classify", json={**body, "inputs": long}))
        try:
            # The first four windows wait on the held runtime as one batch, the rest in the
            # queue, which has room for four more items.
            await until_async(lambda: served.batcher.busy == 1 and served.batcher.queued == windows - 4)
            refused = await client.post("/classify", json={**body, "inputs": five})
            assert refused.status_code == 429, refused.text
        finally:
            release.set()
        answer = await running
        assert answer.status_code == 200 and answer.json()["windows"] == [windows]
        await until_async(lambda: served.batcher.queued == 0)
        fits = await client.post("/classify", json={**body, "inputs": five})
        assert fits.status_code == 200 and fits.json()["windows"] == [5]
        whole = await client.post("/classify", json={**body, "inputs": [long, "x"]})  # more than the whole queue
        assert whole.status_code == 422 and f"whole queue of {windows}" in whole.json()["error"]["message"]


def hf_spans(ckpt: Path, text: str, stride: int = STRIDE) -> list[tuple[int, int]]:
    """Each overflow window's first content token's start and last one's end."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    found = tokenizer(
        text,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        stride=stride,
        truncation=True,
        max_length=MAX_LENGTH,
    )
    spans = []
    for offsets, special in zip(found["offset_mapping"], found["special_tokens_mask"], strict=True):
        content = [o for o, s in zip(offsets, special, strict=True) if not s]
        spans.append((content[0][0], content[-1][1]))
    return spans


async def test_chunks_are_the_windows_with_their_spans(
    served: tuple[httpx.AsyncClient, str], long_repo: tuple[Path, Path, Path]
) -> None:
    client, variant = served
    texts = list(TEXTS.values())
    body = {"inputs": texts, "model": "long-emb", "stride": STRIDE, "return_chunks": True}
    r = await client.post("/embed", json=body)
    assert r.status_code == 200, r.text
    found = r.json()
    plain = (await client.post("/embed", json={**body, "return_chunks": False})).json()
    assert "chunks" not in plain
    np.testing.assert_allclose(found["embeddings"], plain["embeddings"], atol=1e-6)
    for text, chunks, count in zip(texts, found["chunks"], found["windows"], strict=True):
        rows, _, _ = reference(variant, long_repo, text, head=False)
        assert len(chunks) == count == len(rows)
        for chunk, row in zip(chunks, rows, strict=True):
            assert float(np.asarray(chunk["embedding"]) @ unit(row)) >= 0.9999
            piece = text[chunk["start"] : chunk["end"]]
            assert piece and piece == piece.strip()
        assert [(c["start"], c["end"]) for c in chunks] == hf_spans(long_repo[1], text)
        assert chunks[0]["start"] == len(text) - len(text.lstrip()) and chunks[-1]["end"] == len(text.rstrip())


async def test_chunks_without_stride_are_the_window_read(
    make_client: Client, long_repo: tuple[Path, Path, Path]
) -> None:
    text = TEXTS["many windows"]
    async with make_client(models=long_repo[2]) as client:
        body = {"inputs": [text, "short"], "model": "long-emb", "encoding_format": "base64"}
        plain = (await client.post("/embed", json=body)).json()
        chunked = (await client.post("/embed", json={**body, "return_chunks": True})).json()
        assert chunked["truncated"] == plain["truncated"] == [True, False]
        assert chunked["covered"] == plain["covered"]
        assert [len(c) for c in chunked["chunks"]] == chunked["windows"] == [1, 1]
        assert [c[0]["embedding"] for c in chunked["chunks"]] == chunked["embeddings"]
        assert [(c[0]["start"], c[0]["end"]) for c in chunked["chunks"]] == [(0, plain["covered"][0]), (0, 5)]
        refused = await client.post("/embed", json={**body, "return_chunks": True, "truncate": False})
        assert refused.status_code == 422 and refused.json()["error"]["param"] == "inputs[0]"
