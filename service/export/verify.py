"""Parity of an ONNX graph against the PyTorch model, and the gates a graph must pass.

The two sides share nothing but the text. The PyTorch side is the checkpoint's own
transformers tokenizer and torch. The graph side is the serving package itself: token ids
from `TextEncoder` on the tokenizer.json the model directory will hold, padding by
`OnnxSession.pad`, the providers the service would pick, and `OnnxSession.run` (an embedding
graph's per-token output: `OnnxSession.run_outputs`). So a verified export also verifies the
code that serves it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.export.errors import ExportError
from service.runtime.cpus import available_cpus
from service.runtime.session import InferenceError, OnnxSession, SessionError, resolve_providers
from service.runtime.tokenizer import TextEncoder

Batch = dict[str, np.ndarray]
Rows = list[np.ndarray]

FP32_MAX_ABS_DIFF = 1e-4
FP32_MIN_COSINE = 0.9999
VARIANT_MEAN_COSINE = 0.995
# Stricter than the 0.98 floor first proposed: the service promises every served int8 row
# within 0.99 cosine of the reference model, so the gate must not let a weaker graph through.
VARIANT_MIN_COSINE = 0.99
VARIANT_ARGMAX_AGREEMENT = 0.95
VARIANT_MAX_ACCURACY_DROP = 0.015
# Embedding models' per-token output (late chunking), over every real token of the
# verification texts: the pooled row's floors. A chunk pooled from the tokens is a served row
# too, and the shortest chunk is one token, so the 0.99 promise holds only if every token keeps
# it. A token is noisier than a pooled row (nothing averages its error out): all-MiniLM-L6-v2's
# int8 (attention-qko) measured min 0.9936 / mean 0.9995 over 14,072 tokens (one under 0.995,
# the next 0.9968) against 0.9992 / 0.9997 pooled, so it stays served; the recipes before it,
# which fail the pooled gate anyway, measured token min 0.910 / 0.930 / 0.957.
VARIANT_TOKEN_MEAN_COSINE = VARIANT_MEAN_COSINE
VARIANT_TOKEN_MIN_COSINE = VARIANT_MIN_COSINE
# Token classification: agreement over every real (unpadded) token, and entity F1.
VARIANT_TOKEN_ARGMAX_AGREEMENT = 0.98
VARIANT_MAX_F1_DROP = 0.015
# Rerank (one logit): see models/README.md for the choice.
VARIANT_RANK_AGREEMENT = 0.98
VARIANT_SCORE_MAX_ABS_DIFF = 0.05
BATCH_SIZE = 16


def encode_batches(
    tokenizer: Any, texts: Sequence[str], max_length: int, input_names: list[str], batch_size: int = BATCH_SIZE
) -> list[Batch]:
    """The PyTorch side's inputs: the checkpoint's tokenizer, padded on the right by it."""
    batches = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            padding_side="right",
            truncation=True,
            max_length=max_length,
            return_tensors="np",
            return_token_type_ids="token_type_ids" in input_names,
        )
        batches.append({n: np.asarray(enc[n], dtype=np.int64) for n in input_names})
    return batches


def torch_outputs(graph: torch.nn.Module, batches: list[Batch], per_token: bool = False) -> np.ndarray:
    """One row per input; `per_token`: one row per real (unpadded) token, inputs in order."""
    outs = [_torch_run(graph, b)[0] for b in batches]
    if per_token:
        outs = [_real_tokens(out, b) for out, b in zip(outs, batches, strict=True)]
    return np.concatenate(outs)


def torch_embeddings(graph: torch.nn.Module, batches: list[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """An embedding graph's two outputs from one run: one pooled row per input, and one row
    of the last hidden state per real (unpadded) token, inputs in order."""
    pooled, tokens = [], []
    for batch in batches:
        row, hidden = _torch_run(graph, batch)
        pooled.append(row)
        tokens.append(_real_tokens(hidden, batch))  # cut at once: the padded batches are large
    return np.concatenate(pooled), np.concatenate(tokens)


def _torch_run(graph: torch.nn.Module, batch: Batch) -> tuple[np.ndarray, ...]:
    with torch.inference_mode():
        out = graph(*(torch.from_numpy(batch[n]) for n in batch))
    return tuple(o.float().numpy() for o in (out if isinstance(out, tuple) else (out,)))


def _real_tokens(out: np.ndarray, batch: Batch) -> np.ndarray:
    return np.asarray(out[batch["attention_mask"].astype(bool)])


def served_rows(encoder: TextEncoder, tokenizer: Any, texts: Sequence[str], max_length: int, what: str) -> Rows:
    """Token ids as the service makes them, checked against the checkpoint's tokenizer: if
    the tokenizer.json the service loads cuts or splits text differently (its truncation
    side, normalisation, special tokens), the served model is not the PyTorch model."""
    rows = encoder.encode(texts, truncate=True)
    expected = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    check_same_ids([row.tolist() for row in rows], [list(ids) for ids in expected], what)
    return rows


def check_same_ids(served: list[list[int]], expected: list[list[int]], what: str, kind: str = "token ids") -> None:
    """Refuse the export, naming the first difference, unless both sides encode alike."""
    differ = [i for i, (row, ids) in enumerate(zip(served, expected, strict=True)) if row != ids]
    if not differ:
        return
    first = differ[0]
    got, wanted = served[first], expected[first]
    at = next((i for i, (a, b) in enumerate(zip(got, wanted, strict=False)) if a != b), min(len(got), len(wanted)))
    raise ExportError(
        f"verification failed: the served tokenizer (tokenizer.json) and the checkpoint's tokenizer give "
        f"different {kind} for {len(differ)} of {len(served)} {what} (first: #{first} from token {at}, "
        f"{got[at : at + 3]} vs {wanted[at : at + 3]}); nothing written"
    )


def served_outputs(
    path: Path,
    row_sets: Sequence[Rows],
    *,
    output: str,
    pad_token_id: int,
    batch_size: int = BATCH_SIZE,
    per_token: bool = False,
) -> list[np.ndarray]:
    """Run each set of rows through `OnnxSession`, as the service would, in batches of
    mixed lengths so padding is exercised; one output array per set, in row order.
    `per_token`: the graph gives (batch, sequence, labels); each row's real tokens are kept,
    one output row per token, the padding dropped."""
    with _onnxruntime_errors(path):
        session = _session(path, output, pad_token_id)
        run: Callable[[Rows], np.ndarray] = session.run
        if per_token:
            run = _token_rows(session.run, "a token classifier gives (batch, sequence, labels)")
        return [_batched(run, rows, batch_size) for rows in row_sets]


def served_token_embeddings(
    path: Path, rows: Rows, *, output: str, token_output: str, pad_token_id: int, batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """An embedding graph's per-token output, fetched through `OnnxSession` beside the served
    one in the same mixed-length batches: one row per real token, inputs in order."""
    with _onnxruntime_errors(path):
        session = _session(path, output, pad_token_id)

        def fetch(batch: Rows) -> np.ndarray:
            return session.run_outputs(batch, [token_output])[0]

        return _batched(_token_rows(fetch, f"{token_output} is (batch, sequence, hidden)"), rows, batch_size)


def _session(path: Path, output: str, pad_token_id: int) -> OnnxSession:
    return OnnxSession(
        path,
        output=output,
        pad_token_id=pad_token_id,
        providers=resolve_providers("auto"),
        threads=available_cpus(),
    )


def _batched(run: Callable[[Rows], np.ndarray], rows: Rows, batch_size: int) -> np.ndarray:
    return np.concatenate([run(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)])


@contextlib.contextmanager
def _onnxruntime_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except SessionError as exc:
        raise ExportError(f"onnxruntime: {exc}") from exc
    except InferenceError as exc:
        raise ExportError(f"onnxruntime fails to run {path.name}: {exc}") from exc


def _token_rows(run: Callable[[Rows], np.ndarray], expected: str) -> Callable[[Rows], np.ndarray]:
    """`run` for a per-token output: the padded (batch, sequence, width) output, checked for
    its shape, cut back to each row's own tokens."""

    def cut(rows: Rows) -> np.ndarray:
        out = run(rows)
        longest = max(r.shape[-1] for r in rows)
        if out.ndim != 3 or out.shape[:2] != (len(rows), longest):
            raise ExportError(
                f"the graph gives shape {out.shape} for {len(rows)} rows of up to {longest} tokens: {expected}"
            )
        return np.concatenate([out[i, : r.shape[-1]] for i, r in enumerate(rows)])

    return cut


def parity(task: str, reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    figures = {"max_abs_diff": float(np.abs(reference - candidate).max()), "rows": float(len(reference))}
    if task in ("classify", "entities"):
        agree = reference.argmax(axis=1) == candidate.argmax(axis=1)
        figures["argmax_agreement"] = float(agree.mean())
    elif task == "rerank":
        figures["rank_agreement"] = rank_agreement(reference[:, 0], candidate[:, 0])
        figures["score_max_abs_diff"] = float(np.abs(_sigmoid(reference) - _sigmoid(candidate)).max())
    else:
        cos = _cosine(reference, candidate)
        figures["cosine_min"] = float(cos.min())
        figures["cosine_mean"] = float(cos.mean())
    return figures


def token_parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Per-token cosine of an embedding graph's last hidden state, over real tokens only."""
    if reference.shape != candidate.shape:
        raise ExportError(
            f"verification failed: the graph gives token embeddings of shape {candidate.shape}, "
            f"PyTorch {reference.shape}; nothing written"
        )
    cos = _cosine(reference, candidate)
    return {"token_cosine_min": float(cos.min()), "token_cosine_mean": float(cos.mean()), "tokens": float(len(cos))}


def rank_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Of every two rows the reference scores differently, the share the candidate orders the
    same way (Kendall's concordance): what a reranker's user sees is the order."""
    ref = np.sign(reference[:, None] - reference[None, :])
    cand = np.sign(candidate[:, None] - candidate[None, :])
    counted = np.triu(ref != 0, k=1)
    return float((ref[counted] == cand[counted]).mean()) if counted.any() else 1.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x.astype(np.float64))))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return np.asarray((a * b).sum(axis=1) / np.maximum(na * nb, 1e-12))


def check_fp32(task: str, figures: dict[str, float]) -> None:
    """The fp32 graph must be the PyTorch model; anything else is a broken export."""
    if task in ("classify", "rerank", "entities") and figures["max_abs_diff"] > FP32_MAX_ABS_DIFF:
        raise ExportError(
            f"verification failed: fp32 logits differ from PyTorch by {figures['max_abs_diff']:.3g} "
            f"(limit {FP32_MAX_ABS_DIFF:g}); nothing written"
        )
    if figures.get("crossencoder_max_abs_diff", 0.0) > FP32_MAX_ABS_DIFF:
        raise ExportError(
            f"verification failed: fp32 logits differ from CrossEncoder.predict by "
            f"{figures['crossencoder_max_abs_diff']:.3g} (limit {FP32_MAX_ABS_DIFF:g}); nothing written"
        )
    if task == "embed" and figures["cosine_min"] < FP32_MIN_COSINE:
        raise ExportError(
            f"verification failed: fp32 embedding cosine to PyTorch is {figures['cosine_min']:.6f} "
            f"(limit {FP32_MIN_COSINE}); nothing written"
        )
    if task == "embed" and figures.get("token_cosine_min", 1.0) < FP32_MIN_COSINE:
        raise ExportError(
            f"verification failed: fp32 token embedding cosine to PyTorch is {figures['token_cosine_min']:.6f} "
            f"(limit {FP32_MIN_COSINE}); nothing written"
        )


@dataclass
class Gate:
    passed: bool
    reason: str


def variant_gate(task: str, figures: dict[str, float]) -> Gate:
    """Reduced precision is served only if it is, for the user, the same model."""
    if task == "embed":
        ok = figures["cosine_mean"] >= VARIANT_MEAN_COSINE and figures["cosine_min"] >= VARIANT_MIN_COSINE
        gate = Gate(
            ok,
            f"cosine mean {figures['cosine_mean']:.4f} (>= {VARIANT_MEAN_COSINE}), "
            f"min {figures['cosine_min']:.4f} (>= {VARIANT_MIN_COSINE})",
        )
        return _with_token_cosine(gate, figures)
    if task == "rerank":
        return _rerank_gate(figures)
    if task == "entities":
        return _tokens_gate(figures)
    ok = figures["argmax_agreement"] >= VARIANT_ARGMAX_AGREEMENT
    reason = f"argmax agreement {figures['argmax_agreement']:.4f} (>= {VARIANT_ARGMAX_AGREEMENT})"
    return _with_eval_drop(Gate(ok, reason), figures, "eval_accuracy", "eval accuracy", VARIANT_MAX_ACCURACY_DROP)


def _with_token_cosine(gate: Gate, figures: dict[str, float]) -> Gate:
    """An embedding graph's per-token output, when it has one: every real token's vector.
    Figures without it (an export made before it) are held to the pooled gate alone."""
    if "token_cosine_min" not in figures:
        return gate
    mean, low = figures["token_cosine_mean"], figures["token_cosine_min"]
    ok = mean >= VARIANT_TOKEN_MEAN_COSINE and low >= VARIANT_TOKEN_MIN_COSINE
    reason = (
        f"{gate.reason}, token cosine mean {mean:.4f} (>= {VARIANT_TOKEN_MEAN_COSINE}), "
        f"min {low:.4f} (>= {VARIANT_TOKEN_MIN_COSINE})"
    )
    return Gate(gate.passed and ok, reason)


def _tokens_gate(figures: dict[str, float]) -> Gate:
    """Per-token argmax over every real token, and the entities a user gets from them."""
    ok = figures["argmax_agreement"] >= VARIANT_TOKEN_ARGMAX_AGREEMENT
    reason = f"token argmax agreement {figures['argmax_agreement']:.4f} (>= {VARIANT_TOKEN_ARGMAX_AGREEMENT})"
    return _with_eval_drop(Gate(ok, reason), figures, "eval_entity_f1", "eval entity F1", VARIANT_MAX_F1_DROP)


def _with_eval_drop(gate: Gate, figures: dict[str, float], key: str, name: str, limit: float) -> Gate:
    """With --eval-data, the variant's score on it may fall at most `limit` below fp32's."""
    if key not in figures:
        return gate
    drop = figures[f"{key}_fp32"] - figures[key]
    reason = f"{gate.reason}, {name} {figures[key]:.4f} vs fp32 {figures[f'{key}_fp32']:.4f} (drop <= {limit})"
    return Gate(gate.passed and drop <= limit, reason)


def _rerank_gate(figures: dict[str, float]) -> Gate:
    """One logit, no argmax: the order of the scores and the served (sigmoid) score itself."""
    ok = (
        figures["rank_agreement"] >= VARIANT_RANK_AGREEMENT
        and figures["score_max_abs_diff"] <= VARIANT_SCORE_MAX_ABS_DIFF
    )
    return Gate(
        ok,
        f"rank agreement {figures['rank_agreement']:.4f} (>= {VARIANT_RANK_AGREEMENT}), "
        f"sigmoid score max abs diff {figures['score_max_abs_diff']:.4f} (<= {VARIANT_SCORE_MAX_ABS_DIFF})",
    )


def accuracy(logits: np.ndarray, labels: Sequence[int]) -> float:
    return float((logits.argmax(axis=1) == np.asarray(labels)).mean())
