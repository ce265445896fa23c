"""checkpoint -> verified model directory. Nothing is written unless the fp32 graph passes."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from service import __version__
from service.export.checkpoint import Checkpoint, inspect_checkpoint, load_model, load_tokenizer
from service.export.data import read_eval_file, verification_texts
from service.export.errors import ExportError
from service.export.graph import build_graph, export_onnx
from service.export.quantize import FP16_RECIPES, INT8_RECIPES, Recipe
from service.export.verify import (
    Batch,
    accuracy,
    check_fp32,
    encode_batches,
    ort_outputs,
    parity,
    torch_outputs,
    variant_gate,
)
from service.manifest import Manifest, VariantInfo, sha256_file

Log = Callable[[str], None]


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


@dataclass
class _Context:
    """What every verification step needs: the inputs and the PyTorch answers to them."""

    task: str
    batches: list[Batch]
    reference: np.ndarray
    eval_batches: list[Batch]
    eval_labels: list[int]
    eval_fp32: float | None = None


def export_checkpoint(opts: ExportOptions, log: Log = _stderr) -> Manifest:
    ckpt = inspect_checkpoint(opts.checkpoint)
    if opts.out_dir.exists() and not opts.force:
        raise ExportError(f"{opts.out_dir} exists: pass --force to replace it")
    pooling = _pooling(ckpt, opts)
    if opts.eval_data is not None and opts.task != "classify":
        raise ExportError("--eval-data applies to classification exports only")
    started = time.perf_counter()
    model = load_model(ckpt, opts.task)
    tokenizer = load_tokenizer(ckpt)
    max_length = ckpt.max_length(opts.max_length)
    labels = _labels(model.config) if opts.task == "classify" else None
    graph = build_graph(model, opts.task, ckpt.input_names, pooling)
    texts = verification_texts()
    batches = encode_batches(tokenizer, texts, max_length, ckpt.input_names)
    log(f"export: PyTorch reference on {len(texts)} inputs")
    ctx = _Context(opts.task, batches, torch_outputs(graph, batches), [], [])
    if opts.eval_data is not None and labels is not None:
        examples = read_eval_file(opts.eval_data, labels)
        ctx.eval_batches = encode_batches(tokenizer, [t for t, _ in examples], max_length, ckpt.input_names, 64)
        ctx.eval_labels = [y for _, y in examples]

    staging = opts.out_dir.parent / f".{opts.out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        output = "logits" if opts.task == "classify" else "sentence_embedding"
        log("export: writing the fp32 ONNX graph")
        export_onnx(graph, batches[0], output, staging / "model.onnx", max_length)
        fp32 = _verify(ctx, staging / "model.onnx")
        check_fp32(opts.task, fp32)
        log(f"export: fp32 verified {_fmt(fp32)}")
        variants = {"fp32": VariantInfo(file="model.onnx", precision="fp32", recipe="fp32", verification=fp32)}
        wanted = [("int8", INT8_RECIPES)] * opts.int8 + [("fp16", FP16_RECIPES)] * opts.fp16
        for precision, recipes in wanted:
            found = _first_passing(ctx, staging, precision, recipes, log)
            if found is not None:
                variants[precision] = found
        tokenizer.save_pretrained(str(staging))
        shutil.copyfile(ckpt.path / "config.json", staging / "config.json")
        manifest = Manifest(
            name=opts.name or opts.out_dir.name,
            task=opts.task,
            architecture=ckpt.model_type,
            max_length=max_length,
            inputs=ckpt.input_names,
            output=output,
            pad_token_id=int(tokenizer.pad_token_id or 0),
            labels=labels,
            multi_label=getattr(model.config, "problem_type", None) == "multi_label_classification",
            dimension=int(ctx.reference.shape[1]) if opts.task == "embed" else None,
            pooling=pooling if opts.task == "embed" else None,
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


def _verify(ctx: _Context, path: Path) -> dict[str, float]:
    figures = parity(ctx.task, ctx.reference, ort_outputs(path, ctx.batches))
    if ctx.eval_batches:
        figures["eval_accuracy"] = accuracy(ort_outputs(path, ctx.eval_batches), ctx.eval_labels)
        if ctx.eval_fp32 is None:
            ctx.eval_fp32 = figures["eval_accuracy"]
        figures["eval_accuracy_fp32"] = ctx.eval_fp32
    return figures


def _first_passing(
    ctx: _Context, staging: Path, precision: str, recipes: tuple[Recipe, ...], log: Log
) -> VariantInfo | None:
    target = staging / f"model.{precision}.onnx"
    for recipe in recipes:
        candidate = staging / f"candidate.{precision}.onnx"
        try:
            recipe.build(staging / "model.onnx", candidate)
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
    if ctx.eval_batches:
        out["eval_rows"] = len(ctx.eval_labels)
        for name, info in variants.items():
            out[f"eval_accuracy_{name}"] = round(info.verification["eval_accuracy"], 4)
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
