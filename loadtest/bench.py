"""`make bench`: the service against the raw engine and a per-request baseline, in one run.

  python -m loadtest.bench [--smoke] [--out DIR] [--only PART ...]

Starts every process itself, drives it with wrk over a concurrency sweep, and writes
DIR/benchmarks.md, DIR/benchmarks.png and DIR/benchmarks.json (default DIR: docs/).
--only runs some of the later parts alone (bert-base, latency, floor, instances, front-ends,
long, bulk), to check them, into DIR/benchmarks-parts.md and .json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtest import bert_base, bulk, floor, front_ends, long_bench, procs, raw_engine, wrk
from loadtest.report import write_parts_report, write_report
from loadtest.texts import rerank_sets, short_sentences, zipf_sentences
from service.manifest import Manifest

MODELS = procs.REPO / "models"
EMBEDDER = "all-minilm-l6-v2"  # the default embedding model, also the cosine reranker
CHECKPOINT = procs.REPO / ".build" / "minilm-sentiment-checkpoint"


@dataclass
class Plan:
    seconds: float = 10
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64, 256])
    raw_seconds: float = 4
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    baseline_concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64, 256])
    # The later parts run at c=1 and at saturation only. MiniLM (instances): 256, the sweep's
    # own saturated step. BERT-base: 64 already queue two full batches (32 rows) on the 2
    # cores, while 256 would queue ~15 s of fp32 work, near the 30 s request deadline.
    instances_concurrency: list[int] = field(default_factory=lambda: [1, 256])
    # The front-end-bound row (loadtest/front_ends.py): c=1 and the c=64.
    front_concurrency: list[int] = field(default_factory=lambda: [1, 64])
    # Long inputs (loadtest/long_bench.py): saturated, in windows per second.
    long_concurrency: list[int] = field(default_factory=lambda: [16])
    bert_concurrency: list[int] = field(default_factory=lambda: [1, 64])
    # Up to the service's max_batch_size (32): the batches the service itself can form.
    bert_batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    latency_seconds: float = 3
    # The c=1 targets, in paired slices (loadtest/floor.py): the fastest raw setting and the
    # service in turn, a second each, so that both see the same machine.
    floor_slices: int = 20
    floor_slice_seconds: float = 1
    # The smoke leaves BERT-base out: building it takes minutes, `make test` must not.
    bert_base: bool = True
    # Each measurement of the bulk part (loadtest/bulk.py): run-batch beside live traffic.
    bulk_seconds: float = 10

    @classmethod
    def smoke(cls) -> Plan:
        return cls(
            seconds=2,
            concurrency=[1, 4],
            raw_seconds=1,
            batch_sizes=[1, 8],
            baseline_concurrency=[1],
            instances_concurrency=[1, 4],
            front_concurrency=[1, 4],
            long_concurrency=[4],
            bert_concurrency=[1, 4],
            bert_batch_sizes=[1, 8],
            latency_seconds=0.3,
            floor_slices=2,
            floor_slice_seconds=1,
            bert_base=False,
            bulk_seconds=1,
        )


@dataclass
class Step:
    """One wrk run plus what the server reported meanwhile."""

    result: wrk.WrkResult
    mean_batch: float
    server_cpu: float


def _batch_totals(url: str, model: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text

    def value(kind: str) -> float:
        found = re.search(rf'bertserve_batch_size_{kind}\{{model="{model}"\}} (\S+)', text)
        return float(found.group(1)) if found else 0.0

    return value("sum"), value("count")


def sweep(url: str, pid: int, script: Path, concurrency: list[int], seconds: float, model: str | None) -> list[Step]:
    steps = []
    for c in concurrency:
        before = _batch_totals(url, model) if model else (0.0, 0.0)
        cpu0 = procs.tree_cpu_seconds(pid)
        result = wrk.run(url, script, c, seconds)
        cpu = (procs.tree_cpu_seconds(pid) - cpu0) / result.seconds
        after = _batch_totals(url, model) if model else (0.0, 0.0)
        batches = after[1] - before[1]
        mean_batch = (after[0] - before[0]) / batches if batches else 0.0
        steps.append(Step(result, mean_batch, cpu))
        print(
            f"bench:   c={c:<4} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
            f"  errors {result.errors}  batch {mean_batch:5.1f}  server cpu {cpu:.2f}  wrk cpu {result.wrk_cpu:.2f}",
            file=sys.stderr,
            flush=True,
        )
    return steps


# The model each benched route runs on with the default models (rerank: cosine on the
# embedding model, as served when no cross-encoder is).
ROUTE_MODELS = {
    "classify": "minilm-sentiment",
    "embed": "all-minilm-l6-v2",
    "rerank": "all-minilm-l6-v2",
    "tokens": "minilm-ner",
}
ROUTES = {"classify": "/classify", "embed": "/embed", "rerank": "/rerank", "tokens": "/classify/tokens"}
RERANK_PASSAGES = 32


def cpu_variant(model: str) -> str:
    """The variant `auto` serves this model in on this CPU: the model loaded as the service
    loads it, int8 and fp32 timed when both were built. The bench's raw rows and its labels
    name it; `check_served` holds the service to the same answer."""
    from service.runtime.loader import load_model_dir
    from service.settings import Settings

    loaded = load_model_dir(MODELS / model, Settings(variant="auto", provider="cpu"))
    try:
        return loaded.variant
    finally:
        loaded.close()


def check_served(url: str, expected: dict[str, str]) -> None:
    """Raise when the running service serves a model in another variant than the bench's
    labels say (an `auto` timing that came out otherwise): no figure is filed under the wrong name."""
    listed = {m["name"]: m["variant"] for m in httpx.get(f"{url}/models", timeout=10).json()["models"]}
    wrong = {name: (variant, listed.get(name)) for name, variant in expected.items() if listed.get(name) != variant}
    if wrong:
        raise RuntimeError(f"the service serves other variants than the bench labels (label, served): {wrong}")


def run_service(
    variant: str, scripts: dict[str, Path], plan: Plan, work: Path, expected: dict[str, str] | None = None
) -> tuple[dict[str, list[Step]], float]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"BERTSERVE_VARIANT": variant}  # otherwise the defaults, log level info included
    proc = procs.start(procs.serve_cmd(port), env, f"{url}/health/ready", work / f"service-{variant}.log")
    try:
        check_served(url, expected or {})
        out = {}
        for name, script in scripts.items():
            print(f"bench: service ({variant}) {ROUTES[name]}", file=sys.stderr, flush=True)
            # A rerank request is 33 rows: a few clients saturate the service.
            concurrency = [c for c in plan.concurrency if c <= 16] if name == "rerank" else plan.concurrency
            out[name] = sweep(url, proc.pid, script, concurrency, plan.seconds, ROUTE_MODELS[name])
        return out, procs.rss_mb(proc.pid)
    finally:
        procs.stop(proc)


CACHE_BYTES = 64 << 20


def run_cache_compare(script: Path, plan: Plan, work: Path) -> dict[str, list[Step]]:
    """/embed on the repeated-input (Zipf) workload, saturated, without and with the cache."""
    out = {}
    concurrency = [max(plan.concurrency)]
    for name, cache_bytes in (("off", 0), ("on", CACHE_BYTES)):
        port = procs.free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"BERTSERVE_CACHE_BYTES": str(cache_bytes)}
        proc = procs.start(procs.serve_cmd(port), env, f"{url}/health/ready", work / f"service-cache-{name}.log")
        try:
            print(f"bench: service /embed, Zipf workload, cache {name}", file=sys.stderr, flush=True)
            out[name] = sweep(url, proc.pid, script, concurrency, plan.seconds, ROUTE_MODELS["embed"])
        finally:
            procs.stop(proc)
    return out


def run_bert_base(
    script: Path, plan: Plan, work: Path
) -> tuple[dict[str, list[Step]], dict[str, list[raw_engine.RawResult]], dict[str, float], dict[str, float]]:
    """/classify on BERT-base, fp32 and int8, each against the raw engine on the same graph;
    the service is started on a models folder that holds BERT-base alone, so its resident
    memory is that model's."""
    model = bert_base.ensure()
    texts = short_sentences()
    print("bench: raw engine, BERT-base int8 and fp32", file=sys.stderr, flush=True)
    raw = {
        f"bert-{v}": raw_engine.bench(model, v, texts, plan.bert_batch_sizes, plan.raw_seconds)
        for v in ("int8", "fp32")
    }
    # The naive loop too (batches in arrival order): what the target compares with, as a
    # user's own loop over the same requests would pad them.
    raw.update(
        {
            f"bert-{v}-arrival": raw_engine.bench(model, v, texts, plan.bert_batch_sizes, plan.raw_seconds, sort=False)
            for v in ("int8", "fp32")
        }
    )
    served: dict[str, list[Step]] = {}
    rss: dict[str, float] = {}
    startup: dict[str, float] = {}
    for variant in ("int8", "fp32"):
        port = procs.free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"BERTSERVE_VARIANT": variant}
        log = work / f"service-bert-{variant}.log"
        begun = time.perf_counter()
        # Start-up runs the largest batch shape (32 x 256 tokens) on each session before it
        # reports ready: minutes for BERT-base fp32 on 2 busy cores (175 s seen), hence the limit.
        proc = procs.start(procs.serve_cmd(port, bert_base.models_dir()), env, f"{url}/health/ready", log, 600)
        startup[f"bert-{variant}"] = round(time.perf_counter() - begun, 1)
        try:
            print(f"bench: service /classify, BERT-base {variant}", file=sys.stderr, flush=True)
            served[f"bert-{variant}"] = sweep(
                url, proc.pid, script, plan.bert_concurrency, plan.seconds, bert_base.NAME
            )
            rss[f"bert-{variant}"] = procs.rss_mb(proc.pid)
        finally:
            procs.stop(proc)
    return served, raw, rss, startup


# Two ways to spend 2 cores on one model: one session with 2 intra-op threads, or two
# sessions (instances) with one thread each, running two batches at once (the default here).
# The threads per session are left to the service, which splits the CPUs between the
# sessions: setting them would also size the fast lane, which by default spins on every CPU.
INSTANCE_SETTINGS = {
    "1x2": {"BERTSERVE_INSTANCES": "1"},
    "2x1": {"BERTSERVE_INSTANCES": "2"},
}


def run_instances(script: Path, plan: Plan, work: Path) -> dict[str, list[Step]]:
    """/classify (minilm-sentiment, int8 on the CPU) on the default models, per setting."""
    out = {}
    for name, env in INSTANCE_SETTINGS.items():
        port = procs.free_port()
        url = f"http://127.0.0.1:{port}"
        proc = procs.start(procs.serve_cmd(port), env, f"{url}/health/ready", work / f"service-instances-{name}.log")
        try:
            print(f"bench: service /classify, instances x threads {name}", file=sys.stderr, flush=True)
            out[name] = sweep(url, proc.pid, script, plan.instances_concurrency, plan.seconds, ROUTE_MODELS["classify"])
        finally:
            procs.stop(proc)
    return out


def known_settings() -> dict[str, bool]:
    """Whether this checkout's service reads the settings the later parts pass: an unknown
    BERTSERVE_ variable is ignored, so both instance rows would then be one setting."""
    from service.settings import Settings

    return {name: name in Settings.model_fields for name in ("instances", "intra_op_threads", "fast_lane")}


def run_latency(plan: Plan) -> tuple[dict[str, list[raw_engine.LatencyResult]], float]:
    """Batch-1 latency per onnxruntime setting, MiniLM int8 and (unless the smoke) BERT-base int8."""
    texts = short_sentences()
    started = time.perf_counter()
    models = {"classify-int8": MODELS / ROUTE_MODELS["classify"]}
    if plan.bert_base:
        models["bert-int8"] = bert_base.ensure()
    out = {}
    for key, directory in models.items():
        print(f"bench: raw engine batch-1 latency, {key}", file=sys.stderr, flush=True)
        out[key] = raw_engine.batch1_latency(directory, "int8", texts, plan.latency_seconds)
    return out, time.perf_counter() - started


def run_floor(plan: Plan, fastest: dict[str, raw_engine.LatencyResult], work: Path) -> dict[str, object]:
    """The c=1 gap in paired slices, per model: the raw engine's fastest batch-1 setting of the
    latency part (2 threads, spinning on+stop, when that part did not run) and the service's
    /classify at c=1 in turn: the default models for MiniLM, BERT-base alone for BERT-base."""
    texts = short_sentences()
    models = {"classify-int8": floor.served("minilm")}
    if plan.bert_base:
        models["bert-int8"] = floor.served("bert-base")
    script = wrk.write_script(work, "floor", "/classify", [{"inputs": t} for t in texts])
    out: dict[str, object] = {}
    for key, (directory, folder, env) in models.items():
        best = fastest.get(key)
        threads, spinning = (best.threads, best.spinning) if best else (2, "on+stop")
        port = procs.free_port()
        url = f"http://127.0.0.1:{port}"
        proc = procs.start(procs.serve_cmd(port, folder), env, f"{url}/health/ready", work / f"floor-{key}.log", 600)
        try:
            print(f"bench: c=1 against the raw floor in paired slices, {key}", file=sys.stderr, flush=True)
            raw = raw_engine.Batch1(directory, "int8", threads, spinning)  # type: ignore[arg-type]
            result = floor.paired(raw, texts, url, script, plan.floor_slices, plan.floor_slice_seconds)
        finally:
            procs.stop(proc)
        out[key] = {"threads": threads, "spinning": spinning, **asdict(result)}
    return out


PARTS = ("bert-base", "latency", "floor", "instances", "front-ends", "long", "bulk")


def _steps_as_dicts(part: dict[str, Any]) -> dict[str, Any]:
    """A part's result with its sweeps (`rows`: name -> steps) as plain dicts, for the JSON."""
    return {**part, "rows": {k: [asdict(s) for s in v] for k, v in part["rows"].items()}}


def run_parts(parts: list[str], plan: Plan, work: Path, classify: Path) -> dict[str, object]:
    """The later parts, each timed: what the full run adds to the report, or --only alone."""
    out: dict[str, object] = {"known_settings": known_settings()}
    seconds: dict[str, float] = {}
    latency: dict[str, list[raw_engine.LatencyResult]] = {}
    if "latency" in parts:
        latency, seconds["latency"] = run_latency(plan)
        out["latency"] = {k: [asdict(r) for r in v] for k, v in latency.items()}
    if "floor" in parts:
        started = time.perf_counter()
        out["floor"] = run_floor(plan, {k: min(v, key=lambda r: r.p50_ms) for k, v in latency.items()}, work)
        seconds["floor"] = time.perf_counter() - started
    if "bert-base" in parts and plan.bert_base:
        started = time.perf_counter()
        bert_script = wrk.write_script(
            work, "classify-bert", "/classify", [{"inputs": t, "model": bert_base.NAME} for t in short_sentences()]
        )
        served, raw, rss, startup = run_bert_base(bert_script, plan, work)
        out["bert"] = {
            "model": bert_base.NAME,
            "max_length": bert_base.MAX_LENGTH,
            "service": {k: [asdict(s) for s in v] for k, v in served.items()},
            "raw": {k: [asdict(r) for r in v] for k, v in raw.items()},
            "rss_mb": rss,
            "startup_seconds": startup,
            # The export's int8 gate, as it passed: with random weights the head gives nearly
            # every input the same label, so argmax agreement says little; max_abs_diff does.
            "int8_verification": Manifest.read(bert_base.model_dir()).variants["int8"].verification,
        }
        seconds["bert-base"] = time.perf_counter() - started
    if "instances" in parts:
        started = time.perf_counter()
        instances = run_instances(classify, plan, work)
        out["instances"] = {k: [asdict(s) for s in v] for k, v in instances.items()}
        seconds["instances"] = time.perf_counter() - started
    if "front-ends" in parts:
        started = time.perf_counter()
        out["front_ends"] = _steps_as_dicts(front_ends.run(sweep, plan.front_concurrency, plan.seconds, work))
        seconds["front-ends"] = time.perf_counter() - started
    if "long" in parts:
        started = time.perf_counter()
        out["long"] = _steps_as_dicts(long_bench.run(sweep, plan.seconds, plan.long_concurrency, work))
        seconds["long"] = time.perf_counter() - started
    if "bulk" in parts:
        started = time.perf_counter()
        out["bulk"] = asdict(bulk.run(plan.bulk_seconds, plan.raw_seconds, work))
        seconds["bulk"] = time.perf_counter() - started
    out["part_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    return out


def run_baseline(script: Path, plan: Plan, work: Path) -> list[Step]:
    if not (CHECKPOINT / "config.json").is_file():
        raise SystemExit(f"bench: {CHECKPOINT} missing: run `python models/build.py --only minilm-sentiment --force`")
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"BASELINE_CHECKPOINT": str(CHECKPOINT)}
    proc = procs.start(procs.baseline_cmd(port), env, f"{url}/docs", work / "baseline.log")
    try:
        print("bench: per-request baseline (transformers pipeline, PyTorch fp32)", file=sys.stderr, flush=True)
        return sweep(url, proc.pid, script, plan.baseline_concurrency, plan.seconds, None)
    finally:
        procs.stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per step: checks the runner works")
    parser.add_argument("--out", type=Path, default=procs.REPO / "docs", help="where to write the report")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run these later parts alone")
    args = parser.parse_args(argv)
    plan = Plan.smoke() if args.smoke else Plan()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.only and "bert-base" in args.only:
        plan.bert_base = True  # asked for by name: even with --smoke
    build_seconds = 0.0
    if plan.bert_base and (not args.only or {"bert-base", "latency", "floor"} & set(args.only)):
        bert_base.ensure()  # built (minutes) before anything is measured, once per cache key
        build_seconds = time.perf_counter() - started
    if args.only:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            classify = wrk.write_script(work, "classify", "/classify", [{"inputs": t} for t in short_sentences()])
            parts = run_parts(args.only, plan, work, classify)
        parts.update(plan=asdict(plan), smoke=args.smoke, bert_build_seconds=round(build_seconds, 1))
        parts.update(bench_seconds=round(time.perf_counter() - started, 1))
        (args.out / "benchmarks-parts.json").write_text(json.dumps(parts, indent=1))
        write_parts_report(parts, args.out / "benchmarks-parts.md")
        print(f"bench: wrote {args.out / 'benchmarks-parts.md'} in {parts['bench_seconds']:.0f}s", file=sys.stderr)
        return 0
    texts = short_sentences()
    sets = rerank_sets(passages=RERANK_PASSAGES)
    tagger = (MODELS / ROUTE_MODELS["tokens"] / "manifest.json").is_file()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scripts = {
            "classify": wrk.write_script(work, "classify", "/classify", [{"inputs": t} for t in texts]),
            "embed": wrk.write_script(work, "embed", "/embed", [{"inputs": t} for t in texts]),
            "rerank": wrk.write_script(work, "rerank", "/rerank", [{"query": q, "texts": p} for q, p in sets]),
        }
        if tagger:
            scripts["tokens"] = wrk.write_script(work, "tokens", ROUTES["tokens"], [{"inputs": t} for t in texts])
        print("bench: raw engine", file=sys.stderr, flush=True)
        embed = cpu_variant(EMBEDDER)
        raw = {
            "classify-int8": raw_engine.bench(
                MODELS / "minilm-sentiment", "int8", texts, plan.batch_sizes, plan.raw_seconds
            ),
            "classify-fp32": raw_engine.bench(
                MODELS / "minilm-sentiment", "fp32", texts, plan.batch_sizes, plan.raw_seconds
            ),
            f"rerank-{embed}": [raw_engine.bench_rerank(MODELS / EMBEDDER, embed, sets, plan.raw_seconds)],
        }
        # The embedding model's served variant, and fp32 beside it when that is another one.
        for variant in dict.fromkeys((embed, "fp32")):
            raw[f"embed-{variant}"] = raw_engine.bench(
                MODELS / EMBEDDER, variant, texts, plan.batch_sizes, plan.raw_seconds
            )
        tokens_key = f"tokens-{cpu_variant(ROUTE_MODELS['tokens'])}" if tagger else ""
        if tagger:
            raw[tokens_key] = raw_engine.bench(
                MODELS / ROUTE_MODELS["tokens"], tokens_key.split("-")[1], texts, plan.batch_sizes, plan.raw_seconds
            )
        zipf = wrk.write_script(work, "zipf", "/embed", [{"inputs": t} for t in zipf_sentences()])
        labels = {ROUTE_MODELS["classify"]: "int8", EMBEDDER: embed}
        if tagger:
            labels[ROUTE_MODELS["tokens"]] = tokens_key.split("-")[1]
        auto, rss = run_service("auto", scripts, plan, work, labels)
        cache = run_cache_compare(zipf, plan, work)
        fp32_routes = ["classify", "embed"] if embed != "fp32" else ["classify"]
        fp32, _ = run_service("fp32", {name: scripts[name] for name in fp32_routes}, plan, work)
        baseline = run_baseline(scripts["classify"], plan, work)
        parts = run_parts(list(PARTS), plan, work, scripts["classify"])
    service = {
        "classify-int8": [asdict(s) for s in auto["classify"]],
        f"embed-{embed}": [asdict(s) for s in auto["embed"]],
        f"rerank-{embed}": [asdict(s) for s in auto["rerank"]],
        "classify-fp32": [asdict(s) for s in fp32["classify"]],
    }
    if "embed" in fp32:
        service["embed-fp32"] = [asdict(s) for s in fp32["embed"]]
    if tagger:
        service[tokens_key] = [asdict(s) for s in auto["tokens"]]
    results = {
        "plan": asdict(plan),
        "smoke": args.smoke,
        "rerank_passages": RERANK_PASSAGES,
        "raw": {k: [asdict(r) for r in v] for k, v in raw.items()},
        "service": service,
        "baseline": [asdict(s) for s in baseline],
        "cache": {k: [asdict(s) for s in v] for k, v in cache.items()},
        "cache_bytes": CACHE_BYTES,
        "rss_mb": rss,
        **parts,
        "bert_build_seconds": round(build_seconds, 1),
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=1))
    write_report(results, args.out)
    print(f"bench: wrote {args.out / 'benchmarks.md'} in {results['bench_seconds']:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
