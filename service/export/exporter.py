"""checkpoint -> verified model directory. Nothing is written unless the fp32 graph passes."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from service import __version__
from service.export.checkpoint import Checkpoint, inspect_checkpoint, load_tokenizer, load_torch_model
from service.export.data import (
    read_eval_file,
    read_eval_pairs,
    verification_pairs,
    verification_texts,
)
from service.export.errors import ExportError
from service.export.graph import build_graph, export_onnx, output_names
from service.export.pairs import (
    CrossEncoderReference,
    PairSet,
    arrange_pairs,
    crossencoder_parity,
    crossencoder_reference,
    encode_pair_batches,
    served_pair_rows,
)
from service.export.plain import plain_output
from service.export.quantize import FP16_RECIPES, INT8_RECIPES, Recipe
from service.export.verify import (
    Batch,
    Rows,
    accuracy,
    check_fp32,
    encode_batches,
    parity,
    served_outputs,
    served_rows,
    served_token_embeddings,
    token_parity,
    torch_embeddings,
    torch_outputs,
    variant_gate,
)
from service.manifest import Manifest, VariantInfo, sha256_file
from service.runtime.tokenizer import TextEncoder

if TYPE_CHECKING:
    from service.export.entities import EntityEval

Log = Callable[[str], None]
# Told the name of each stage as it begins (load, export, verify fp32, quantize int8, ...):
# how `bertserve serve --model` shows the progress of the export it runs in a child process.
Stage = Callable[[str], None]
# The step that builds each reduced precision, as the progress names it.
BUILD_STAGE = {"int8": "quantize int8", "fp16": "convert fp16"}


def _no_stage(name: str) -> None:
    return None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class ExportOptions:
    checkpoint: Path
    out_dir: Path
    task: str
    name: str | None = None
    pooling: str | None = None
    max_length: int | None = None
    int8: bool = False
    fp16: bool = False
    eval_data: Path | None = None
    force: bool = False
    # A classifier trained on text pairs (NLI, paraphrase): verified, and served, on pairs.
    # Implied by task rerank (a cross-encoder always takes pairs).
    pairs: bool = False

    @property
    def takes_pairs(self) -> bool:
        return self.task == "rerank" or self.pairs


@dataclass
class _Context:
    """What every verification step needs: the served token ids of the inputs, how the
    service feeds the graph, and the PyTorch answers to the same texts (or pairs)."""

    task: str
    output: str
    pad_token_id: int
    pairs: bool
    # An embedding graph's per-token output, and PyTorch's last hidden state for every real
    # token of the verification texts, inputs in order.
    token_output: str | None = None
    token_reference: np.ndarray = field(default_factory=lambda: np.empty(0))
    example: Batch = field(default_factory=dict)
    rows: Rows = field(default_factory=list)
    reference: np.ndarray = field(default_factory=lambda: np.empty(0))
    eval_rows: Rows = field(default_factory=list)
    eval_labels: list[int] = field(default_factory=list)
    eval_fp32: float | None = None
    pair_set: PairSet = field(default_factory=lambda: PairSet([], 0, []))
    crossencoder: CrossEncoderReference | None = None
    # Token classification: every output row is one real token; entity F1 on --eval-data.
    entity_eval: EntityEval | None = None
    eval_f1_fp32: float | None = None

    @property
    def per_token(self) -> bool:
        return self.task == "entities"


def export_checkpoint(opts: ExportOptions, log: Log = _stderr, stage: Stage = _no_stage) -> Manifest:
    ckpt = _preflight(opts)
    if ckpt.ignored:
        log(f"export: {ckpt.path} has both {ckpt.weights} and {ckpt.ignored}: using the PyTorch weights")
    elif ckpt.tensorflow:
        log(f"export: reading the TensorFlow weights in {ckpt.weights} into the PyTorch model")
    with plain_output(log, "export: transformers: "):
        return _export(ckpt, opts, log, stage)


def _preflight(opts: ExportOptions) -> Checkpoint:
    """Every mistake that needs no model, reported before the minutes of loading and reference runs."""
    ckpt = inspect_checkpoint(opts.checkpoint)
    if opts.out_dir.exists() and not opts.force:
        raise ExportError(f"{opts.out_dir} exists: pass --force to replace it")
    if opts.pairs and opts.task in ("embed", "entities"):
        raise ExportError("--pairs applies to classify (a pair classifier); rerank always takes pairs")
    ckpt.check_head(opts.task)
    _pooling(ckpt, opts)
    if opts.eval_data is not None:
        if opts.task not in ("classify", "entities"):
            raise ExportError("--eval-data applies to classification exports only")
        if not opts.eval_data.is_file():
            raise ExportError(f"--eval-data {opts.eval_data} does not exist")
    return ckpt


def _export(ckpt: Checkpoint, opts: ExportOptions, log: Log, stage: Stage) -> Manifest:
    started = time.perf_counter()
    stage("load")
    pooling = _pooling(ckpt, opts)
    model = load_torch_model(ckpt, opts.task)
    tokenizer = load_tokenizer(ckpt)
    max_length = ckpt.max_length(opts.max_length)
    labels = _labels(model.config) if opts.task in ("classify", "entities") else None
    graph = build_graph(model, opts.task, ckpt.input_names, pooling)
    staging = opts.out_dir.parent / f".{opts.out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        # The tokenizer the service will load is written first: verification goes through it.
        tokenizer.save_pretrained(str(staging))
        shutil.copyfile(ckpt.path / "config.json", staging / "config.json")
        ctx = _reference(opts, ckpt, graph, tokenizer, staging, max_length, labels, log)
        variants = _variants(ctx, graph, staging, opts, max_length, log, stage)
        manifest = Manifest(
            name=opts.name or opts.out_dir.name,
            task=opts.task,
            architecture=ckpt.model_type,
            max_length=max_length,
            inputs=ckpt.input_names,
            output=ctx.output,
            pad_token_id=ctx.pad_token_id,
            labels=labels,
            pairs=ctx.pairs,
            multi_label=getattr(model.config, "problem_type", None) == "multi_label_classification",
            dimension=int(ctx.reference.shape[1]) if opts.task == "embed" else None,
            pooling=pooling if opts.task == "embed" else None,
            token_output=ctx.token_output,
            variants=variants,
            versions=_versions(),
            evaluation=_evaluation(ctx, variants, time.perf_counter() - started),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        manifest.files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()}
        manifest.write(staging)
        if opts.out_dir.exists():
            shutil.rmtree(opts.out_dir)
        staging.rename(opts.out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"export: wrote {opts.out_dir} ({', '.join(variants)})")
    return manifest


def _reference(
    opts: ExportOptions,
    ckpt: Checkpoint,
    graph: torch.nn.Module,
    tokenizer: Any,
    staging: Path,
    max_length: int,
    labels: list[str] | None,
    log: Log,
) -> _Context:
    """Both sides' inputs from the same texts, the token ids checked equal, and PyTorch's answers."""
    outputs = output_names(opts.task)
    ctx = _Context(
        task=opts.task,
        output=outputs[0],
        pad_token_id=int(tokenizer.pad_token_id or 0),
        pairs=opts.takes_pairs,
        token_output=outputs[1] if len(outputs) > 1 else None,
    )
    encoder = TextEncoder(staging / "tokenizer.json", max_length)
    eval_data = opts.eval_data if labels else None
    if ctx.pairs:
        batches = _pair_inputs(ctx, encoder, tokenizer, ckpt.input_names, max_length, eval_data, labels or [])
        if ckpt.tensorflow:
            log("export: CrossEncoder.predict check skipped: sentence-transformers cannot read tf_model.h5")
        else:
            ctx.crossencoder = crossencoder_reference(ckpt.path, tokenizer, ctx.pair_set, max_length, log)
    elif ctx.per_token:
        batches = _text_inputs(ctx, encoder, tokenizer, ckpt.input_names, max_length, None, [])
        if eval_data is not None:
            # Encoded by the windows the token route serves with, and checked like the rest.
            # Imported here: the serving package's aggregation is needed for this gate only.
            from service.export.entities import EntityEval, read_eval_entities

            ctx.entity_eval = EntityEval(
                read_eval_entities(eval_data), staging / "tokenizer.json", max_length, labels or []
            )
            ctx.entity_eval.check_ids(tokenizer, max_length)
            ctx.eval_rows = ctx.entity_eval.rows
    else:
        batches = _text_inputs(ctx, encoder, tokenizer, ckpt.input_names, max_length, eval_data, labels or [])
    log(f"export: PyTorch reference on {len(ctx.rows)} {'pairs' if ctx.pairs else 'inputs'}")
    ctx.example = batches[0]
    if ctx.token_output is not None:
        ctx.reference, ctx.token_reference = torch_embeddings(graph, batches)
    else:
        ctx.reference = torch_outputs(graph, batches, per_token=ctx.per_token)
    return ctx


def _text_inputs(
    ctx: _Context,
    encoder: TextEncoder,
    tokenizer: Any,
    names: list[str],
    max_length: int,
    eval_data: Path | None,
    labels: list[str],
) -> list[Batch]:
    texts = verification_texts()
    ctx.rows = served_rows(encoder, tokenizer, texts, max_length, "verification texts")
    if eval_data is not None:
        examples = read_eval_file(eval_data, labels)
        ctx.eval_rows = served_rows(encoder, tokenizer, [t for t, _ in examples], max_length, "--eval-data rows")
        ctx.eval_labels = [y for _, y in examples]
    return encode_batches(tokenizer, texts, max_length, names)


def _pair_inputs(
    ctx: _Context,
    encoder: TextEncoder,
    tokenizer: Any,
    names: list[str],
    max_length: int,
    eval_data: Path | None,
    labels: list[str],
) -> list[Batch]:
    """As `_text_inputs`, on pairs: grouped by the truncation transformers applies to them."""
    ctx.pair_set = arrange_pairs(tokenizer, verification_pairs(), max_length)
    ctx.rows = served_pair_rows(encoder, tokenizer, ctx.pair_set, max_length, names, "verification pairs")
    if eval_data is not None:
        examples = read_eval_pairs(eval_data, labels)
        eval_set = arrange_pairs(tokenizer, [pair for pair, _ in examples], max_length)
        ctx.eval_rows = served_pair_rows(encoder, tokenizer, eval_set, max_length, names, "--eval-data rows")
        ctx.eval_labels = [examples[i][1] for i in eval_set.order]
    return encode_pair_batches(tokenizer, ctx.pair_set, max_length, names)


def _variants(
    ctx: _Context,
    graph: torch.nn.Module,
    staging: Path,
    opts: ExportOptions,
    max_length: int,
    log: Log,
    stage: Stage,
) -> dict[str, VariantInfo]:
    """The fp32 graph, which must pass or nothing is written, then each reduced precision
    asked for, kept only if one of its recipes passes the variant gate."""
    stage("export")
    log("export: writing the fp32 ONNX graph")
    export_onnx(graph, ctx.example, output_names(ctx.task), staging / "model.onnx", max_length)
    stage("verify fp32")
    fp32 = _verify(ctx, staging / "model.onnx")
    check_fp32(ctx.task, fp32)
    log(f"export: fp32 verified {_fmt(fp32)}")
    variants = {"fp32": VariantInfo(file="model.onnx", precision="fp32", recipe="fp32", verification=fp32)}
    wanted = [("int8", INT8_RECIPES)] * opts.int8 + [("fp16", FP16_RECIPES)] * opts.fp16
    for precision, recipes in wanted:
        found = _first_passing(ctx, staging, precision, recipes, log, stage)
        if found is not None:
            variants[precision] = found
    return variants


def _verify(ctx: _Context, path: Path) -> dict[str, float]:
    """The graph's figures, run the way the service runs it."""
    sets = [ctx.rows, ctx.eval_rows] if ctx.eval_rows else [ctx.rows]
    outputs = served_outputs(path, sets, output=ctx.output, pad_token_id=ctx.pad_token_id, per_token=ctx.per_token)
    figures = parity(ctx.task, ctx.reference, outputs[0])
    if ctx.token_output is not None:
        tokens = served_token_embeddings(
            path, ctx.rows, output=ctx.output, token_output=ctx.token_output, pad_token_id=ctx.pad_token_id
        )
        figures.update(token_parity(ctx.token_reference, tokens))
    if ctx.per_token:
        figures.update({"rows": float(len(ctx.rows)), "tokens": float(len(ctx.reference))})
    if ctx.entity_eval is not None:
        figures["eval_entity_f1"] = ctx.entity_eval.f1(outputs[1])
        if ctx.eval_f1_fp32 is None:
            ctx.eval_f1_fp32 = figures["eval_entity_f1"]
        figures["eval_entity_f1_fp32"] = ctx.eval_f1_fp32
        return figures
    if ctx.pairs:
        # crossencoder_rows 0: the CrossEncoder.predict check did not run (see the export log).
        figures.update(
            crossencoder_parity(ctx.crossencoder, outputs[0]) if ctx.crossencoder else {"crossencoder_rows": 0.0}
        )
    if ctx.eval_rows:
        figures["eval_accuracy"] = accuracy(outputs[1], ctx.eval_labels)
        if ctx.eval_fp32 is None:
            ctx.eval_fp32 = figures["eval_accuracy"]
        figures["eval_accuracy_fp32"] = ctx.eval_fp32
    return figures


def _first_passing(
    ctx: _Context, staging: Path, precision: str, recipes: tuple[Recipe, ...], log: Log, stage: Stage
) -> VariantInfo | None:
    target = staging / f"model.{precision}.onnx"
    for recipe in recipes:
        candidate = staging / f"candidate.{precision}.onnx"
        try:
            stage(BUILD_STAGE[precision])
            recipe.build(staging / "model.onnx", candidate)
            stage(f"verify {precision}")
            figures = _verify(ctx, candidate)
        except ExportError as exc:
            log(f"export: WARNING {precision} recipe {recipe.name} could not be verified: {exc}")
            candidate.unlink(missing_ok=True)
            continue
        gate = variant_gate(ctx.task, figures)
        if gate.passed:
            candidate.rename(target)
            log(f"export: {precision} ({recipe.name}) verified: {gate.reason}")
            return VariantInfo(file=target.name, precision=precision, recipe=recipe.name, verification=figures)
        log(f"export: WARNING {precision} recipe {recipe.name} fails its gate: {gate.reason}")
        candidate.unlink(missing_ok=True)
    log(f"export: WARNING no {precision} variant written: no recipe passed its gate")
    return None


def _pooling(ckpt: Checkpoint, opts: ExportOptions) -> str | None:
    if opts.task != "embed":
        return None
    return ckpt.sentence_transformers_pooling() or opts.pooling or "mean"


def _labels(config: Any) -> list[str]:
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(int(config.num_labels))]


def _evaluation(ctx: _Context, variants: dict[str, VariantInfo], seconds: float) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {"export_seconds": round(seconds, 1)}
    if ctx.crossencoder is not None:
        out["crossencoder_activation"] = ctx.crossencoder.activation
    if ctx.entity_eval is not None:
        out["eval_rows"] = len(ctx.eval_rows)
        out["eval_entities"] = ctx.entity_eval.gold_count
        for name, info in variants.items():
            out[f"eval_entity_f1_{name}"] = round(info.verification["eval_entity_f1"], 4)
    elif ctx.eval_rows:
        out["eval_rows"] = len(ctx.eval_labels)
        for name, info in variants.items():
            out[f"eval_accuracy_{name}"] = round(info.verification["eval_accuracy"], 4)
    if ctx.token_output is not None:
        # Six places, not four: the fp32 gate is 0.9999, which four would round away.
        for name, info in variants.items():
            for figure in ("token_cosine_min", "token_cosine_mean"):
                out[f"{figure}_{name}"] = round(info.verification[figure], 6)
    return out


def _versions() -> dict[str, str]:
    out = {"bertserve": __version__}
    for pkg in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _fmt(figures: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in figures.items())
