"""docs/benchmarks.md and the throughput / p99 plot, from one run's results."""

from __future__ import annotations

import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtest import bulk, front_ends, long_bench
from loadtest.floor import Paired
from service.runtime.cpus import available_cpus

Results = dict[str, Any]


def _best(steps: list[dict[str, Any]]) -> float:
    return float(max(s["result"]["rps"] for s in steps))


def _raw_best(rows: list[dict[str, Any]]) -> float:
    return float(max(r["rows_per_s"] for r in rows))


def targets(res: Results) -> list[tuple[str, str, bool]]:
    svc, raw = res["service"], res["raw"]
    c1 = next(s for s in svc["classify-int8"] if s["result"]["concurrency"] == 1)["result"]["p50_ms"]
    raw_b1 = next(r for r in raw["classify-int8"] if r["batch_size"] == 1)["p50_ms"]
    clf = _best(svc["classify-int8"]) / _raw_best(raw["classify-int8"])
    clf32 = _best(svc["classify-fp32"]) / _raw_best(raw["classify-fp32"])
    embed = _embed_key(res)
    emb = _best(svc[embed]) / _raw_best(raw[embed])
    base = _best(svc["classify-fp32"]) / _best(res["baseline"])
    base8 = _best(svc["classify-int8"]) / _best(res["baseline"])
    return [
        ("/classify saturated throughput >= 0.8 x raw engine (int8)", f"{clf:.2f} x", clf >= 0.8),
        ("/classify saturated throughput >= 0.8 x raw engine (fp32)", f"{clf32:.2f} x", clf32 >= 0.8),
        (
            "/classify p50 at concurrency 1 <= raw batch-1 latency + 2 ms (int8)",
            f"{c1:.2f} ms vs {raw_b1:.2f} + 2 ms",
            c1 <= raw_b1 + 2,
        ),
        (">= 4 x the per-request baseline (both fp32)", f"{base:.1f} x", base >= 4),
        ("(for reference) the served CPU default, int8, against the fp32 baseline", f"{base8:.1f} x", base8 >= 4),
        (
            f"/embed saturated throughput >= 0.8 x raw engine ({embed.split('-', 1)[1]}, 384 dims)",
            f"{emb:.2f} x",
            emb >= 0.8,
        ),
        *_embed_variant_row(res),
        *_task_targets(res),
        *later_targets(res),
        (
            f"resident memory after the sweep, the {3 if _tokens_key(res) else 2} default models loaded, < 600 MB",
            f"{res['rss_mb']:.0f} MB",
            res["rss_mb"] < 600,
        ),
    ]


def _tokens_key(res: Results) -> str | None:
    return next((k for k in res["service"] if k.startswith("tokens-")), None)


def _rerank_key(res: Results) -> str | None:
    return next((k for k in res["service"] if k.startswith("rerank-")), None)


def _embed_key(res: Results) -> str:
    """The /embed sweep of the served default: int8 where the embedding model has one."""
    return "embed-int8" if "embed-int8" in res["service"] else "embed-fp32"


def _embed_variant_row(res: Results) -> list[tuple[str, str, bool]]:
    svc = res["service"]
    if "embed-int8" not in svc or "embed-fp32" not in svc:
        return []
    int8, fp32 = _best(svc["embed-int8"]), _best(svc["embed-fp32"])
    return [
        (
            "(for reference) /embed saturated, the int8 default (attention-qko) against fp32, same run",
            f"{int8 / fp32:.2f} x ({int8:.0f} vs {fp32:.0f} req/s)",
            True,
        )
    ]


def _task_targets(res: Results) -> list[tuple[str, str, bool]]:
    svc, raw = res["service"], res["raw"]
    out = []
    rerank = _rerank_key(res)
    if rerank:
        passages = res["rerank_passages"]
        served = _best(svc[rerank]) * passages
        ceiling = raw[rerank][0]["rows_per_s"]
        c1 = next(s for s in svc[rerank] if s["result"]["concurrency"] == 1)["result"]["p50_ms"]
        out += [
            (
                f"/rerank (a query and {passages} passages, cosine on the embedding model) passages/s "
                ">= 0.85 x raw engine",
                f"{served / ceiling:.2f} x ({served:.0f} vs {ceiling:.0f} passages/s)",
                served / ceiling >= 0.85,
            ),
            (
                "(for reference) /rerank p50 at concurrency 1 against the raw engine's per query",
                f"{c1:.2f} ms vs {raw[rerank][0]['p50_ms']:.2f} ms",
                True,
            ),
        ]
    if "cache" in res:
        off, on = _best(res["cache"]["off"]), _best(res["cache"]["on"])
        out.append(
            (
                f"(for reference) /embed on the Zipf workload, cache on ({res['cache_bytes'] >> 20} MiB) against off",
                f"{on / off:.2f} x ({on:.0f} vs {off:.0f} req/s)",
                True,
            )
        )
    key = _tokens_key(res)
    if key:
        ratio = _best(svc[key]) / _raw_best(raw[key])
        variant = key.split("-", 1)[1]
        out.append(
            (f"/classify/tokens saturated throughput >= 0.8 x raw engine ({variant})", f"{ratio:.2f} x", ratio >= 0.8)
        )
    return out


def _machine() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = []
    for pkg in ("onnxruntime", "tokenizers", "fastapi", "uvicorn", "numpy", "torch", "transformers"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    return [
        f"- CPU: {cpu}, {available_cpus()} usable cores (affinity and cgroup quota)",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- {', '.join(versions)}",
    ]


def _sweep_table(steps: list[dict[str, Any]], batches: bool = True) -> list[str]:
    head = "| concurrency | req/s | p50 ms | p95 ms | p99 ms | errors | mean batch | server CPU | wrk CPU |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        r = s["result"]
        batch = f"{s['mean_batch']:.1f}" if batches else "-"
        lines.append(
            f"| {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['errors']} | {batch} | {s['server_cpu']:.2f} | {r['wrk_cpu']:.2f} |"
        )
    return lines


def _raw_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| batch size | rows/s | p50 ms per batch |", "|---|---|---|"]
    lines += [f"| {r['batch_size']} | {r['rows_per_s']:.1f} | {r['p50_ms']:.2f} |" for r in rows]
    return lines


def write_report(res: Results, out: Path) -> None:
    svc = res["service"]
    session = res["raw"]["classify-int8"][0].get("session", "")  # results files without it still render
    lines = ["# Benchmarks", ""]
    if res["smoke"]:
        lines += ["**Smoke run** (a few seconds per step): checks the runner, not the figures.", ""]
    lines += [
        "Written by `make bench` (`python -m loadtest.bench`) in one run on one machine. Every figure",
        "below comes from that run; ratios compare numbers measured minutes apart on the same cores.",
        "",
        "## Machine",
        "",
        *_machine(),
        "",
        "## Method",
        "",
        "- /rerank: 64 sets of a query and 32 passages, each a rotten_tomatoes sentence, one set per request.",
        "- Load: wrk (C, event-driven) with a Lua script posting one of 256 rotten_tomatoes",
        "  sentences per request, one input per request, for "
        f"{res['plan']['seconds']:.0f} s per step. wrk runs on the same cores as the server;",
        "  its own CPU use is the `wrk CPU` column (cores).",
        "- Raw engine: the same ONNX file and tokenizer the service loads, called in a tight loop",
        "  (tokenize + run) at each batch size, no HTTP: the ceiling"
        + (f" ({session}: the service's thread plan for one model's instances, in one session)." if session else "."),
        "- Baseline: a FastAPI route calling the transformers `pipeline` once per request on the",
        "  fine-tuned PyTorch checkpoint (fp32), as most tutorials do (`loadtest/baseline_app.py`).",
        "- `mean batch` is from the service's own metrics (batch_size sum / count over the step).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {'yes' if ok else 'no'} |" for name, value, ok in targets(res)]
    sections = [
        ("classify-int8", "/classify, int8 (the CPU default)"),
        ("classify-fp32", "/classify, fp32"),
        *(
            (key, f"/embed, {key.split('-', 1)[1]}, 384 dimensions")
            for key in ("embed-int8", "embed-fp32")
            if key in svc
        ),
    ]
    tokens = _tokens_key(res)
    if tokens:
        sections.append((tokens, f"/classify/tokens, {tokens.split('-', 1)[1]} (the default tagger, minilm-ner)"))
    for key, title in sections:
        lines += [
            "",
            f"## Service: {title}",
            "",
            *_sweep_table(svc[key]),
            "",
            "Raw engine, same graph:",
            "",
            *_raw_table(res["raw"][key]),
        ]
    rerank = _rerank_key(res)
    if rerank:
        raw = res["raw"][rerank][0]
        passages = res["rerank_passages"]
        lines += [
            "",
            f"## Service: /rerank, a query and {passages} passages per request "
            f"(cosine, all-minilm-l6-v2 {rerank.split('-', 1)[1]})",
            "",
            f"Each request is {passages + 1} rows for the batcher; req/s x {passages} = passages/s.",
            "",
            *_sweep_table(svc[rerank]),
            "",
            f"Raw engine, same graph, one batch of the query and its {passages} passages per loop "
            f"(tokenize, run, normalise, cosine): {raw['rows_per_s']:.1f} passages/s, "
            f"p50 {raw['p50_ms']:.2f} ms per query.",
        ]
    if "cache" in res:
        lines += [
            "",
            "## Result cache: /embed on a repeated-input workload",
            "",
            "20,000 requests drawn from 10,000 rotten_tomatoes sentences with Zipf(1.1) popularity, one",
            f"sentence per request, at concurrency {res['cache']['off'][0]['result']['concurrency']}; the same "
            f"service with `BERTSERVE_CACHE_BYTES=0` (the default) and {res['cache_bytes']}.",
            "",
            "Cache off:",
            "",
            *_sweep_table(res["cache"]["off"]),
            "",
            "Cache on:",
            "",
            *_sweep_table(res["cache"]["on"]),
        ]
    lines += later_sections(res)
    lines += [
        "",
        "## Per-request baseline (transformers pipeline, PyTorch fp32)",
        "",
        *_sweep_table(res["baseline"], batches=False),
        "",
        "![throughput against p99 latency](benchmarks.png)",
        "",
        f"Resident memory of the serving process after the sweep: {res['rss_mb']:.0f} MB.",
        f"The whole run took {res['bench_seconds']:.0f} s.",
        "",
    ]
    (out / "benchmarks.md").write_text("\n".join(lines))
    _plot(res, out / "benchmarks.png")


def _plot(res: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    series = (
        ("classify-int8", "bertserve /classify int8", "C0"),
        ("classify-fp32", "bertserve /classify fp32", "C1"),
        (_embed_key(res), f"bertserve /embed {_embed_key(res).split('-', 1)[1]}", "C2"),
    )
    for key, label, colour in series:
        steps = res["service"][key]
        ax.plot(
            [s["result"]["rps"] for s in steps], [s["result"]["p99_ms"] for s in steps], "o-", color=colour, label=label
        )
        ax.axvline(
            _raw_best(res["raw"][key]), color=colour, linestyle="--", alpha=0.6, label=f"raw engine ceiling ({key})"
        )
    base = res["baseline"]
    ax.plot(
        [s["result"]["rps"] for s in base],
        [s["result"]["p99_ms"] for s in base],
        "s-",
        color="C3",
        label="per-request baseline (PyTorch fp32)",
    )
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Throughput against p99 latency, concurrency sweep")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The later parts: BERT-base, batch-1 latency per onnxruntime setting, instances. Each
# function reads only its own keys, so `bench --only` can render them without the rest.

C1_MARGIN_MS = 0.5
BERT_SATURATED = 0.95


def _fastest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return min(rows, key=lambda r: r["p50_ms"])


def _c1(steps: list[dict[str, Any]]) -> float:
    return float(next(s for s in steps if s["result"]["concurrency"] == 1)["result"]["p50_ms"])


def _setting(row: dict[str, Any]) -> str:
    return f"{row['threads']} thread{'s' if row['threads'] > 1 else ''}, spinning {row['spinning']}"


def _paired_target(name: str, paired: dict[str, Any]) -> tuple[str, str, bool]:
    """The c=1 target from paired slices: the median of the per-slice gaps decides."""
    slices = Paired(paired["raw_ms"], paired["service_ms"])
    q1, median, q3 = slices.quartiles()
    return (
        f"/classify p50 at concurrency 1 <= the fastest raw batch-1 p50 + {C1_MARGIN_MS} ms ({name} int8), "
        f"{len(slices.gaps)} paired slices",
        f"gap median {median:+.2f} ms (quartiles {q1:+.2f} to {q3:+.2f}); "
        f"raw {statistics.median(paired['raw_ms']):.2f} ms ({_setting(paired)}), "
        f"service {statistics.median(paired['service_ms']):.2f} ms",
        median <= C1_MARGIN_MS,
    )


def later_targets(res: Results) -> list[tuple[str, str, bool]]:
    out = []
    latency = res.get("latency", {})
    c1_sources = {"classify-int8": ("MiniLM", res.get("service", {}).get("classify-int8"))}
    if "bert" in res:
        c1_sources["bert-int8"] = ("BERT-base", res["bert"]["service"]["bert-int8"])
    for key, (name, steps) in c1_sources.items():
        paired = res.get("floor", {}).get(key)
        if paired is not None:
            out.append(_paired_target(name, paired))
            continue
        if key not in latency or not steps:
            continue
        fastest, c1 = _fastest(latency[key]), _c1(steps)
        out.append(
            (
                f"/classify p50 at concurrency 1 <= the fastest raw batch-1 p50 + {C1_MARGIN_MS} ms ({name} int8)",
                f"{c1:.2f} ms vs {fastest['p50_ms']:.2f} + {C1_MARGIN_MS} ms ({_setting(fastest)})",
                c1 <= fastest["p50_ms"] + C1_MARGIN_MS,
            )
        )
    if "bert" in res:
        bert = res["bert"]
        for variant in ("int8", "fp32"):
            key = f"bert-{variant}"
            served = _best(bert["service"][key])
            ceiling = f"{served / _raw_best(bert['raw'][key]):.2f} x the length-sorted ceiling"
            naive = bert["raw"].get(f"{key}-arrival")
            if naive is None:  # a run from before the naive loop was measured
                out.append((f"BERT-base /classify saturated ({variant}) against the raw engine", ceiling, True))
                continue
            ratio = served / _raw_best(naive)
            out.append(
                (
                    f"BERT-base /classify saturated throughput >= {BERT_SATURATED} x the raw engine's loop "
                    f"in arrival order ({variant})",
                    f"{ratio:.2f} x ({ceiling})",
                    ratio >= BERT_SATURATED,
                )
            )
        rss = ", ".join(f"{k.split('-')[1]} {v:.0f} MB" for k, v in bert["rss_mb"].items())
        out.append(("(for reference) resident memory serving BERT-base alone, after its sweep", rss, True))
    if "instances" in res:
        inst = res["instances"]
        sat = _best(inst["2x1"]) / _best(inst["1x2"])
        c1 = _c1(inst["2x1"]) / _c1(inst["1x2"])
        out.append(
            (
                "(for reference) /classify int8, 2 instances x 1 thread against 1 x 2: saturated req/s, c=1 p50",
                f"{sat:.2f} x, {c1:.2f} x ({_c1(inst['2x1']):.2f} vs {_c1(inst['1x2']):.2f} ms)",
                True,
            )
        )
    if "front_ends" in res:
        out += front_ends.targets(res["front_ends"])
    if "long" in res:
        out += long_bench.targets(res["long"])
    if "bulk" in res:
        out += bulk.targets(res["bulk"])
    return out


def _latency_table(rows: list[dict[str, Any]]) -> list[str]:
    fastest = _fastest(rows)
    lines = ["| intra-op threads | spinning | p50 ms per batch-1 run | runs |", "|---|---|---|---|"]
    for r in rows:
        mark = " (fastest)" if r is fastest else ""
        lines.append(f"| {r['threads']} | {r['spinning']} | {r['p50_ms']:.2f}{mark} | {r['runs']} |")
    return lines


def later_sections(res: Results) -> list[str]:
    lines: list[str] = []
    if "latency" in res:
        names = {"classify-int8": "MiniLM int8 (minilm-sentiment)", "bert-int8": "BERT-base int8"}
        lines += [
            "",
            "## Raw engine: batch-1 latency per onnxruntime setting",
            "",
            "One rotten_tomatoes sentence per run (tokenize + run), each setting for "
            f"{res['plan']['latency_seconds']:g} s, no HTTP.",
            "Spinning `off` is `session.intra_op.allow_spinning=0`, `on` is `=1`; `on+stop` adds",
            "`session.force_spinning_stop=1`, which parks the spinning threads as soon as the last",
            "concurrent run returns.",
        ]
        for key, rows in res["latency"].items():
            lines += ["", f"{names.get(key, key)}:", "", *_latency_table(rows)]
    if "bert" in res:
        bert = res["bert"]
        figures = bert["int8_verification"]
        gate = (
            f"argmax agreement {figures['argmax_agreement']:.4f} over {figures['rows']:.0f} inputs and a largest "
            f"logit difference to PyTorch of {figures['max_abs_diff']:.4f}"
        )
        lines += [
            "",
            f"## Service: /classify on BERT-base ({bert['model']})",
            "",
            "The bert-base-uncased shape (12 layers, hidden 768, 12 heads, intermediate 3072) with random",
            "weights (`torch.manual_seed(0)`, 2 labels) and all-MiniLM-L6-v2's uncased WordPiece tokenizer,",
            f"exported by `bertserve export --int8 --max-length {bert['max_length']}` (`loadtest/bert_base.py`).",
            "The service is started on a models folder holding this model alone; `model` is set in each request.",
            "",
            f"The export's int8 gate passed with {gate}.",
            "Random weights give nearly every input the same label with a margin far above int8's error, so",
            "the argmax gate passes without telling much here; the largest logit difference to PyTorch is",
            "the figure that shows what int8 changed.",
        ]
        for variant in ("int8", "fp32"):
            key = f"bert-{variant}"
            lines += [
                "",
                f"### {variant}",
                "",
                *_sweep_table(bert["service"][key]),
                "",
                "Raw engine, same graph, batches of neighbours in length (the ceiling):",
                "",
                *_raw_table(bert["raw"][key]),
                *(
                    [
                        "",
                        "Raw engine, same graph, batches in arrival order (a user's own loop):",
                        "",
                        *_raw_table(bert["raw"][f"{key}-arrival"]),
                    ]
                    if f"{key}-arrival" in bert["raw"]
                    else []
                ),
                "",
                f"Resident memory of the serving process after the sweep: {bert['rss_mb'][key]:.0f} MB; "
                f"start-up to ready: {bert['startup_seconds'][key]:.0f} s.",
            ]
    if "instances" in res:
        known = res.get("known_settings", {})
        lines += [
            "",
            "## Instances: /classify int8 (minilm-sentiment), one session x 2 threads against two x 1",
            "",
            "The default models, `BERTSERVE_INSTANCES=1` against `BERTSERVE_INSTANCES=2` on 2 CPUs, the",
            "threads per session left to the service (the CPUs split between the sessions, the fast lane",
            "on every CPU in both), at concurrency 1 and at saturation. The second is the default here.",
        ]
        if not known.get("instances", True):
            lines += [
                "",
                "**This checkout's service has no `instances` setting: it ignored BERTSERVE_INSTANCES, so the",
                "two rows differ in intra-op threads only.**",
            ]
        for name, title in (("1x2", "1 instance x 2 threads"), ("2x1", "2 instances x 1 thread")):
            lines += ["", f"{title}:", "", *_sweep_table(res["instances"][name])]
    if "front_ends" in res:
        lines += front_ends.section(res["front_ends"], _sweep_table)
    if "long" in res:
        lines += long_bench.section(res["long"], _sweep_table)
    if "bulk" in res:
        lines += bulk.section(res["bulk"])
    if "part_seconds" in res:
        took = ", ".join(f"{k} {v:.0f} s" for k, v in res["part_seconds"].items())
        built = f" (BERT-base built first: {res['bert_build_seconds']:.0f} s)" if res.get("bert_build_seconds") else ""
        lines += ["", f"These parts took: {took}{built}."]
    return lines


def write_parts_report(res: Results, path: Path) -> None:
    """`bench --only`: the later parts' targets and sections alone."""
    lines = ["# Benchmarks: later parts alone (`bench --only`)", ""]
    if res["smoke"]:
        lines += ["**Smoke run** (a few seconds per step): checks the runner, not the figures.", ""]
    lines += ["## Machine", "", *_machine(), "", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if ok else 'no'} |" for name, value, ok in later_targets(res)]
    lines += [*later_sections(res), ""]
    path.write_text("\n".join(lines))
