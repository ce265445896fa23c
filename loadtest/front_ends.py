"""The front-ends part of `make bench`: one process against BERTSERVE_API_SERVERS=2.

- The front-end-bound row: /classify on a near-free model (loadtest/tiny_bert.py), so the
  HTTP front ends are the bound, as on a GPU: req/s at c=64, CPU time per request across
  every process of the service, and the c=1 p50, with 1 and with 2 front ends.
- Memory: each process's resident memory (RSS) and proportional set size (PSS) serving the
  three default models, with 1 and with 2 front ends, after a few requests on every route.
  Separate processes share their libraries' code pages: the sum of RSS counts those once per
  process, the sum of PSS once, and is what the service occupies. The target is held to PSS,
  and both sums are reported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from loadtest import procs, tiny_bert, wrk
from loadtest.texts import short_sentences

# The targets of the front-end-bound row.
SPEEDUP = 1.4  # 2 front ends' req/s at c=64 over 1's
CPU_PER_REQUEST = 1.3  # 2 front ends' CPU time per request over 1's, at most
C1_EXTRA_MS = 0.2  # 2 front ends' c=1 p50 over 1's, at most
MEMORY_EXTRA_MB = 200  # 2 front ends' total resident memory over one process's, on the default models

WARM_CALLS = [
    ("/classify", {"inputs": ["a warm-up sentence", "and another"]}),
    ("/embed", {"inputs": ["a warm-up sentence", "and another"]}),
    ("/rerank", {"query": "warm", "texts": ["a warm-up sentence", "and another"]}),
    ("/classify/tokens", {"inputs": ["Ada Lovelace was born in London."]}),
]

Sweep = Callable[[str, int, Path, list[int], float, str | None], list[Any]]


def tree(pid: int) -> dict[str, list[int]]:
    """A service's processes by role: the supervisor's children, or the one process."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    if not children:
        return {"process": [pid]}
    roles: dict[str, list[int]] = {"supervisor": [pid], "engine": [], "front ends": []}
    for child in children:
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        roles["engine" if b"service.engine_process" in cmdline else "front ends"].append(child)
    return roles


def memory(pid: int) -> dict[str, dict[str, list[float]]]:
    """Per measure ("rss", "pss"), each role's processes in MB."""
    roles = tree(pid)
    return {
        measure: {role: [round(read(p), 1) for p in pids] for role, pids in roles.items()}
        for measure, read in (("rss", procs.rss_mb), ("pss", procs.pss_mb))
    }


def _total(roles: dict[str, list[float]]) -> float:
    return sum(sum(values) for values in roles.values())


def run(sweep: Sweep, concurrency: list[int], seconds: float, work: Path) -> dict[str, Any]:
    model_dir = tiny_bert.MODEL.ensure()
    script = wrk.write_script(
        work, "classify-tiny", "/classify", [{"inputs": t, "model": tiny_bert.NAME} for t in short_sentences()]
    )
    out: dict[str, Any] = {"model": tiny_bert.NAME, "rows": {}, "memory": {}}
    for servers in ("1", "2"):
        url, proc = _start(model_dir.parent, servers, work / f"front-ends-tiny-{servers}.log")
        try:
            print(f"bench: front-end-bound /classify ({tiny_bert.NAME}), {servers} front end(s)", file=sys.stderr)
            out["rows"][servers] = sweep(url, proc.pid, script, concurrency, seconds, tiny_bert.NAME)
        finally:
            procs.stop(proc)
    for servers in ("1", "2"):
        url, proc = _start(procs.REPO / "models", servers, work / f"front-ends-default-{servers}.log")
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                for _ in range(5):
                    for path, body in WARM_CALLS:
                        client.post(path, json=body)
            out["memory"][servers] = memory(proc.pid)
        finally:
            procs.stop(proc)
    return out


def _start(models: Path, servers: str, log: Path) -> tuple[str, Any]:
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"BERTSERVE_API_SERVERS": servers}
    return url, procs.start(procs.serve_cmd(port, models), env, f"{url}/health/ready", log, 600)


def _at(steps: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    return next(s for s in steps if s["result"]["concurrency"] == concurrency)


def _cpu_ms_per_request(step: dict[str, Any]) -> float:
    rps = step["result"]["rps"]
    return 1000 * step["server_cpu"] / rps if rps else float("inf")


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool]]:
    rows = res["rows"]
    top = max(s["result"]["concurrency"] for s in rows["1"])
    one, two = _at(rows["1"], top), _at(rows["2"], top)
    speedup = two["result"]["rps"] / one["result"]["rps"]
    cpu = _cpu_ms_per_request(two) / _cpu_ms_per_request(one)
    c1_one, c1_two = _at(rows["1"], 1)["result"]["p50_ms"], _at(rows["2"], 1)["result"]["p50_ms"]
    pss = {k: _total(m["pss"]) for k, m in res["memory"].items()}
    rss = {k: _total(m["rss"]) for k, m in res["memory"].items()}
    return [
        (
            f"front-end-bound /classify ({res['model']}) at c={top}: 2 front ends >= {SPEEDUP} x the req/s of 1",
            f"{speedup:.2f} x ({two['result']['rps']:.0f} vs {one['result']['rps']:.0f} req/s)",
            speedup >= SPEEDUP,
        ),
        (
            f"front-end-bound: CPU time per request, every process, 2 front ends <= {CPU_PER_REQUEST} x 1's",
            f"{cpu:.2f} x ({_cpu_ms_per_request(two):.2f} vs {_cpu_ms_per_request(one):.2f} ms)",
            cpu <= CPU_PER_REQUEST,
        ),
        (
            f"front-end-bound: c=1 p50, 2 front ends <= 1's + {C1_EXTRA_MS} ms",
            f"{c1_two:.2f} vs {c1_one:.2f} ms ({c1_two - c1_one:+.2f} ms)",
            c1_two <= c1_one + C1_EXTRA_MS,
        ),
        (
            f"memory (PSS, every process), three default models: 2 front ends <= one process + {MEMORY_EXTRA_MB} MB",
            f"{pss['2']:.0f} vs {pss['1']:.0f} MB ({pss['2'] - pss['1']:+.0f} MB); "
            f"RSS summed {rss['2']:.0f} vs {rss['1']:.0f} MB ({rss['2'] - rss['1']:+.0f} MB)",
            pss["2"] <= pss["1"] + MEMORY_EXTRA_MB,
        ),
    ]


def section(res: dict[str, Any], table: Callable[[list[dict[str, Any]]], list[str]]) -> list[str]:
    lines = [
        "",
        f"## Front ends: one process against 2 front ends and an engine ({res['model']})",
        "",
        f"/classify on `{res['model']}`, a random BERT of 2 layers and hidden size 64 exported by",
        "`bertserve export`: its inference costs almost nothing, so the front ends are the bound, as on",
        "a GPU. `BERTSERVE_API_SERVERS=1` (the default here) against `=2`. Server CPU is every process",
        "of the service together (supervisor, engine, front ends), in cores.",
    ]
    for servers, title in (("1", "1 process"), ("2", "2 front ends + engine")):
        lines += ["", f"{title}:", "", *table(res["rows"][servers])]
    lines += [
        "",
        "Memory per process, MB, serving the three default models after a few requests on every route:",
        "resident (RSS) and proportional (PSS: a page shared by n processes, as libraries' code is,",
        "counted 1/n in each, so the sum is what the service occupies).",
        "",
        "| setting | measure | processes | total |",
        "|---|---|---|---|",
    ]
    for servers, measures in res["memory"].items():
        for measure, roles in measures.items():
            parts = "; ".join(f"{role} {', '.join(f'{v:.0f}' for v in values)}" for role, values in roles.items())
            lines.append(f"| {servers} | {measure.upper()} | {parts} | {_total(roles):.0f} |")
    return lines
