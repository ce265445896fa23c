"""Faster variants of the default embedding model, and what each costs: the measured frontier.

    PYTHONPATH=. .venv/bin/python -m loadtest.embed_variants --out /tmp/embed-variants

Builds each recipe from models/all-minilm-l6-v2/model.onnx into --out (models/ is only read),
then, per recipe, the per-row cosine to the fp32 graph on the exporter's fixed inputs and on
1,000 real sentences (both through TextEncoder + OnnxSession, as the exporter verifies), and
its throughput against fp32 at batch 1 and 32 on 2 intra-op threads. Calibration and the
sensitivity sweep use other sentences than the two evaluation sets, so both stay held out.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx

from loadtest.texts import long_reviews, short_sentences
from service.export.data import verification_texts
from service.export.quantize import INT8_RECIPES
from service.export.verify import VARIANT_MEAN_COSINE, VARIANT_MIN_COSINE, Rows, parity, served_outputs
from service.runtime.session import CPU, OnnxSession
from service.runtime.tokenizer import TextEncoder

MODEL = Path("models/all-minilm-l6-v2")
OUTPUT = "sentence_embedding"
PAD = 0
Build = Callable[[Path, Path], None]


@dataclass(frozen=True)
class Data:
    fixed: Rows  # the exporter's 246 verification inputs
    sentences: Rows  # held-out rotten_tomatoes sentences
    calibration: Rows  # other sentences and long reviews: calibration and the sweep only


@dataclass
class Result:
    recipe: str
    fixed_min: float
    fixed_mean: float
    sentences_min: float
    sentences_mean: float
    speedup_b1: float = 0.0
    speedup_b32: float = 0.0

    @property
    def passed(self) -> bool:
        mins, means = (self.fixed_min, self.sentences_min), (self.fixed_mean, self.sentences_mean)
        return min(mins) >= VARIANT_MIN_COSINE and min(means) >= VARIANT_MEAN_COSINE


def load_data(encoder: TextEncoder, sentences: int, calibrate: int, long: int) -> Data:
    fixed = verification_texts()
    held = short_sentences(sentences, seed=1)
    seen = set(fixed) | set(held)
    calib = [t for t in short_sentences(sentences + 2 * calibrate, seed=2) if t not in seen][:calibrate]
    # Long reviews too: activation ranges at 256 tokens are not those of a 20-token sentence.
    calib += [t for t in long_reviews(2 * long, seed=3) if t not in seen][:long]
    enc = encoder.encode
    return Data(enc(fixed, truncate=True), enc(held, truncate=True), enc(calib, truncate=True))


def weight_matmuls(src: Path) -> dict[str, str]:
    """MatMul node -> its layer's name (from the bias added after it), for every MatMul
    with a weight: the attention score products (two activations) are not in it."""
    model = onnx.load(str(src), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    bias_of = {
        n.input[0]: next((i for i in n.input if i in weights), "") for n in model.graph.node if n.op_type == "Add"
    }
    return {
        n.name: bias_of.get(n.output[0], n.name).removeprefix("model.encoder.").removesuffix(".bias")
        for n in model.graph.node
        if n.op_type == "MatMul" and any(i in weights for i in n.input)
    }


def dynamic(nodes: list[str] | None) -> Build:
    def build(src: Path, dst: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            src, dst, op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
        )  # fmt: skip

    return build


def static(calibration: list[dict[str, np.ndarray]], activations: str, method: str, nodes: list[str]) -> Build:
    """QDQ, per-channel int8 weights, int8 activations with scales fixed by calibration."""

    def build(src: Path, dst: Path) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        feeds: Iterator[dict[str, np.ndarray]] = iter(calibration)

        class Reader:  # all quantize_static asks of a reader is get_next()
            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(feeds, None)

        quantize_static(
            src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=getattr(QuantType, activations), weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
            calibrate_method=getattr(CalibrationMethod, method),
        )  # fmt: skip

    return build


def fused(then: Build | None = None) -> Build:
    """onnxruntime.transformers' BERT fusions, offline: the runtime's own pass fuses the skip
    layer norms but leaves the erf GELU unfused, which this fuses (BiasGelu). Attention stays
    unfused in both: the exported mask subgraph (Where on a bool mask) is not a pattern the
    fuser knows. Optionally followed by another recipe on the fused graph."""

    def build(src: Path, dst: Path) -> None:
        from onnxruntime.transformers.optimizer import optimize_model

        model = optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
        if then is None:
            model.save_model_to_file(str(dst))
            return
        tmp = dst.with_suffix(".fused.onnx")
        model.save_model_to_file(str(tmp))
        then(tmp, dst)

    return build


def cosines(path: Path, data: Data, reference: list[np.ndarray], recipe: str) -> Result:
    fixed, sentences = served_outputs(path, [data.fixed, data.sentences], output=OUTPUT, pad_token_id=PAD)
    a, b = parity("embed", reference[0], fixed), parity("embed", reference[1], sentences)
    return Result(recipe, a["cosine_min"], a["cosine_mean"], b["cosine_min"], b["cosine_mean"])


def min_cosine(path: Path, rows: Rows, reference: np.ndarray) -> float:
    (out,) = served_outputs(path, [rows], output=OUTPUT, pad_token_id=PAD)
    return parity("embed", reference, out)["cosine_min"]


def sensitivity(src: Path, out: Path, rows: Rows, log: Callable[[str], None]) -> list[tuple[str, float]]:
    """Each weight MatMul quantized alone (dynamic, per-channel) and the min cosine that
    costs on `rows`, least costly first. `rows` are calibration rows: the gate's evaluation
    sets stay held out of every choice made here."""
    (reference,) = served_outputs(src, [rows], output=OUTPUT, pad_token_id=PAD)
    names = weight_matmuls(src)
    alone = {}
    for node, layer in names.items():
        dynamic([node])(src, out / "sweep.onnx")
        alone[node] = min_cosine(out / "sweep.onnx", rows, reference)
        log(f"sweep: {layer:36s} alone: min cosine {alone[node]:.5f}")
    ranked = sorted(alone.items(), key=lambda kv: kv[1], reverse=True)
    (out / "sensitivity.json").write_text(json.dumps([(names[n], c) for n, c in ranked], indent=1))
    return ranked


def greedy(src: Path, out: Path, rows: Rows, ranked: list[str], floor: float, log: Callable[[str], None]) -> list[str]:
    """The longest least-sensitive-first prefix of `ranked` whose joint quantization keeps the
    min cosine on `rows` >= floor. Found by bisection (the cost of a prefix grows with it),
    so about 6 builds, not 36: the sweep runs on a shared 2-core machine."""
    (reference,) = served_outputs(src, [rows], output=OUTPUT, pad_token_id=PAD)
    lo, hi = 0, len(ranked)  # invariant: prefix lo passes (0 is fp32), prefixes past hi fail
    while lo < hi:
        mid = (lo + hi + 1) // 2
        dynamic(ranked[:mid])(src, out / "sweep.onnx")
        got = min_cosine(out / "sweep.onnx", rows, reference)
        log(f"greedy {floor}: {mid} MatMuls quantized: min cosine {got:.5f}")
        lo, hi = (mid, hi) if got >= floor else (lo, mid - 1)
    (out / "sweep.onnx").unlink(missing_ok=True)
    return ranked[:lo]


def throughput(session: OnnxSession, rows: Rows, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        session.run(rows[i : i + batch])
    return len(rows) / (time.perf_counter() - start)


def speedups(candidate: Path, fp32: Path, rows: Rows, rounds: int) -> tuple[float, float]:
    """Candidate / fp32 throughput at batch 1 and 32, ratio of medians. The machine is
    shared, so fp32 and candidate rounds alternate (who goes first alternates too): a slow
    spell of a neighbour's benchmark lands on both rather than on one of them."""
    pair = [OnnxSession(p, output=OUTPUT, pad_token_id=PAD, providers=[CPU], threads=2) for p in (fp32, candidate)]
    b1, b32 = rows[:64], rows[:256]
    for session in pair:  # warm-up: first runs allocate and pick kernels
        throughput(session, b32[:64], 32)
        throughput(session, b1[:8], 1)
    seen: list[list[tuple[float, float]]] = [[], []]
    for r in range(rounds):
        for k in (r % 2, 1 - r % 2):
            seen[k].append((throughput(pair[k], b1, 1), throughput(pair[k], b32, 32)))
    med = [[statistics.median(x[b] for x in runs) for b in (0, 1)] for runs in seen]
    return med[1][0] / med[0][0], med[1][1] / med[0][1]


def recipes(src: Path, out: Path, data: Data, floors: list[float], log: Callable[[str], None]) -> dict[str, Build]:
    # Calibration feeds padded as the service pads its batches (16 rows, mixed lengths).
    padder = OnnxSession(src, output=OUTPUT, pad_token_id=PAD, providers=[CPU], threads=2)
    feeds = [padder.pad(data.calibration[i : i + 16]) for i in range(0, len(data.calibration), 16)]
    matmuls = list(weight_matmuls(src))
    built: dict[str, Build] = {"fp32-fused": fused()}
    built |= {r.name: r.build for r in INT8_RECIPES}  # the exporter's own, attention-qko included
    # MinMax only. Percentile and Entropy stack every batch of a tensor into one array: they
    # fail on batches of mixed lengths, and padded to one width (256) the process was killed
    # for memory on this machine.
    for act in ("QInt8", "QUInt8"):
        built[f"static-qdq-{act}-minmax".lower()] = static(feeds, act, "MinMax", matmuls)
    built["fused-dynamic-int8-per-channel"] = fused(dynamic(None))
    # A smaller set for the 36 + 6 sweep builds: short sentences and some long reviews.
    rows = data.calibration[:128] + data.calibration[-16:]
    ranked = [node for node, _ in sensitivity(src, out, rows, log)]
    for floor in floors:
        kept = greedy(src, out, rows, ranked, floor, log)
        built[f"dynamic-int8-greedy-{floor}-{len(kept)}of{len(ranked)}"] = dynamic(kept)
    return built


def table(results: list[Result]) -> str:
    lines = [
        "| recipe | speed-up b1 | speed-up b32 | fixed min / mean | 1,000 sentences min / mean | gate |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.recipe} | {r.speedup_b1:.2f}x | {r.speedup_b32:.2f}x | {r.fixed_min:.4f} / {r.fixed_mean:.4f} "
            f"| {r.sentences_min:.4f} / {r.sentences_mean:.4f} | {'pass' if r.passed else 'fail'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/embed-variants"))
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--calibrate", type=int, default=256, help="calibration sentences (plus 32 long reviews)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds")
    parser.add_argument(
        "--floors", type=float, nargs="+", default=[VARIANT_MIN_COSINE, 0.995], help="greedy's min cosine"
    )
    args = parser.parse_args()
    logging.getLogger("root").setLevel(logging.ERROR)  # the quantizers log every node

    def log(msg: str) -> None:
        print(f"{datetime.now(UTC):%H:%M:%S} {msg}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    src = args.model / "model.onnx"
    manifest = json.loads((args.model / "manifest.json").read_text())
    data = load_data(
        TextEncoder(args.model / "tokenizer.json", manifest["max_length"]), args.sentences, args.calibrate, 32
    )
    reference = served_outputs(src, [data.fixed, data.sentences], output=OUTPUT, pad_token_id=PAD)
    results, paths = [], {}
    for name, build in recipes(src, args.out, data, args.floors, log).items():
        paths[name] = args.out / f"{name}.onnx"
        build(src, paths[name])
        results.append(cosines(paths[name], data, reference, name))
        log(f"{name}: fixed min {results[-1].fixed_min:.4f}, sentences min {results[-1].sentences_min:.4f}")
    for result in results:
        result.speedup_b1, result.speedup_b32 = speedups(paths[result.recipe], src, data.sentences, args.rounds)
        log(f"{result.recipe}: speed-up {result.speedup_b1:.2f}x (batch 1), {result.speedup_b32:.2f}x (batch 32)")
    print(table(results))
    (args.out / "frontier.json").write_text(json.dumps([asdict(r) | {"passed": r.passed} for r in results], indent=1))


if __name__ == "__main__":
    main()
