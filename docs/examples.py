"""Run every example in README.md against a real server, and check or rewrite what it shows.

    .venv/bin/python docs/examples.py [--check]   list every output that differs from the server's (exit 1)
    .venv/bin/python docs/examples.py --write     write what the server answered into README.md

An example is either a `$ curl ...` line in a code block (continued by a trailing `\\` or an
open quote), with the lines below it, up to the next `$` line or the block's end, as its
output; or a ```python block, whose standard output is the code block after it that follows an
`<!-- example: output -->` comment. Each runs against `bertserve serve` on a free port
(tests/e2e/procs.py's launcher), on the default models in models/ and the default settings;
`localhost:8000` and `127.0.0.1:8000` are rewritten to that port. A `$` line that is not a
curl command (`... make run`) is shown only, and must show no output.

An HTML comment just before a block (GitHub does not show it) sets what that block needs;
directives are separated by `;`:

    <!-- example: env NAME=VALUE ... -->            the server's environment
    <!-- example: models NAME ... NEW=NAME -->       serve only these default models; NEW=NAME serves
                                                     a copy of NAME under the name NEW
    <!-- example: building NAME=TASK:STATE ... -->   the .building.json `make run` keeps while it builds
    <!-- example: not run: WHY -->                   skipped, and why
    <!-- example: output -->                         the stdout of the python block before it

--check compares the README's output with the server's: JSON bodies value by value, other
text line by line (numbers with the tolerance below); the status line and each header the
README shows (`-i`), where `...` stands for the headers left out. Values that change on every
run or build are compared by kind only: request ids, Cohere's response `id`, `loaded_at`,
`sha256` (a fine-tuned model's graph changes with each build), the start-up
timing `inline_max_tokens`, and the `date`, `content-length` and `x-*-time` headers. Numbers:
the fine-tuned default models (FINE_TUNED) are trained again by each build, and two builds'
scores differed by up to 0.034, so theirs are compared within 0.05 (labels, order, spans and
token counts exactly); the embedding model is an export of fixed weights (its int8 graph is a
deterministic quantisation of them) and answers the same digits from every build on one
machine, so its numbers are compared within 1e-5: room for another CPU's rounding, far below
the 1e-3 a change of graph variant makes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.procs import DEFAULT_MODELS, Server  # noqa: E402

README = REPO / "README.md"
FINE_TUNED = frozenset({"minilm-sentiment", "minilm-ner"})  # models/build.py trains them at build time
FINE_TUNED_TOLERANCE = 0.05
FIXED_TOLERANCE = 1e-5
# JSON keys whose value changes on every run or build, by the type it then has: compared by type only
# (a token's integer `id` is compared; Cohere's response `id`, a fresh UUID, is not).
VOLATILE_KEYS = {
    **dict.fromkeys(("id", "loaded_at", "sha256", "request_id", "bertserve.request_id"), str),
    "inline_max_tokens": int,  # each fast lane is timed at start-up
}
VOLATILE_HEADERS = re.compile(r"date|content-length|x-request-id|x-[a-z-]+-time", re.IGNORECASE)
DOCUMENTED_PORT = re.compile(r"(?:https?://)?(?:localhost|127\.0\.0\.1):8000")
MARKER = re.compile(r"<!--\s*example:\s*(.*?)\s*-->")
HEADER = re.compile(r"([A-Za-z0-9-]+):\s?(.*)")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
# curl options that take a value (so that value is not read as a flag).
CURL_VALUED = frozenset({"-H", "-d", "-X", "-o", "-u", "-A", "-e", "-m", "-w", "-D", "--data", "--header"})


@dataclass(frozen=True)
class Setup:
    """What a block needs of its server; the default (all fields empty) is `bertserve serve` on models/."""

    env: tuple[tuple[str, str], ...] = ()
    models: tuple[tuple[str, str], ...] = ()  # (served name, default model it is a copy of)
    building: tuple[tuple[str, str, str], ...] = ()  # (name, task, state)


@dataclass
class Marker:
    line: int
    setup: Setup = Setup()
    not_run: str | None = None
    output: bool = False


@dataclass
class Example:
    line: int  # 1-based line of the command (or of the python block's fence)
    kind: str  # "curl" or "python"
    command: str  # the curl command as the shell reads it, or the python source
    output: list[str]  # the README's lines
    span: tuple[int, int] | None  # 0-based [start, end) of those lines in the file; None: no output block
    setup: Setup

    @property
    def title(self) -> str:
        first = self.command.splitlines()[0] if self.command else ""
        return f"$ {first}" if self.kind == "curl" else f"```python ({first})"


@dataclass
class Parsed:
    examples: list[Example] = field(default_factory=list)
    skipped: list[tuple[int, int, str]] = field(default_factory=list)  # blocks marked not run: first, last line, why


def _marker(text: str, line: int) -> Marker:
    marker = Marker(line)
    env: list[tuple[str, str]] = []
    models: list[tuple[str, str]] = []
    building: list[tuple[str, str, str]] = []
    for directive in filter(None, (d.strip() for d in text.split(";"))):
        word, _, rest = directive.partition(" ")
        if directive.startswith("not run"):
            marker.not_run = directive.removeprefix("not run").lstrip(" :") or "no reason given"
        elif directive == "output":
            marker.output = True
        elif word == "env":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env.append((name, value))
        elif word == "models":
            models += [(item.split("=")[0], item.split("=")[-1]) for item in rest.split()]
        elif word == "building":
            for item in rest.split():
                name, _, task_state = item.partition("=")
                task, _, state = task_state.partition(":")
                building.append((name, task, state))
        else:
            raise ValueError(f"line {line}: unknown example directive {directive!r}")
    marker.setup = Setup(tuple(env), tuple(models), tuple(building))
    return marker


def _split_commands(lines: list[str], start: int, end: int, setup: Setup) -> list[Example]:
    """The `$` commands of one block (lines[start:end]) and the output under each."""
    out: list[Example] = []
    k = start
    while k < end:
        if not lines[k].startswith("$ "):
            if not out:
                raise ValueError(f"line {k + 1}: output before any `$` command")
            k += 1
            continue
        first, command = k, lines[k][2:]
        while True:
            if command.endswith("\\"):
                command = command[:-1].rstrip() + " " + lines[k + 1].strip()
            else:
                try:
                    shlex.split(command)
                    break
                except ValueError:  # a quote still open: the shell reads on
                    command += "\n" + lines[k + 1]
            k += 1
        k += 1
        out_start = k
        while k < end and not lines[k].startswith("$ "):
            k += 1
        out.append(Example(first + 1, "curl", command, lines[out_start:k], (out_start, k), setup))
    return out


def parse(text: str) -> Parsed:
    lines = text.split("\n")
    parsed = Parsed()
    pending: Marker | None = None
    last_python: Example | None = None
    i = 0
    while i < len(lines):
        found = MARKER.fullmatch(lines[i].strip())
        if found:
            pending = _marker(found[1], i + 1)
            i += 1
            continue
        if not lines[i].startswith("```"):
            if pending is not None and lines[i].strip():
                raise ValueError(f"line {pending.line}: an example marker must come just before its code block")
            i += 1
            continue
        lang, fence = lines[i][3:].strip(), i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"line {fence + 1}: code block never closed")
        marker, pending = pending or Marker(fence), None
        i = end + 1
        if marker.not_run is not None:
            parsed.skipped.append((fence + 1, end + 1, marker.not_run))
            continue
        if marker.output:
            if last_python is None or last_python.span is not None:
                raise ValueError(f"line {marker.line}: an output block with no python block before it")
            last_python.output, last_python.span = lines[fence + 1 : end], (fence + 1, end)
            continue
        if lang == "python":
            last_python = Example(fence + 1, "python", "\n".join(lines[fence + 1 : end]), [], None, marker.setup)
            parsed.examples.append(last_python)
        elif any(line.startswith("$ ") for line in lines[fence + 1 : end]):
            parsed.examples += _split_commands(lines, fence + 1, end, marker.setup)
    return parsed


# -- comparing what the README shows with what the server answered -------------------------------


@dataclass
class Shown:
    """An example's output: for `curl -i`, a status line and the headers shown (`...` elides the rest)."""

    status: str | None
    headers: list[tuple[str, str]]
    elided: bool
    body: list[str]


def includes_headers(command: str) -> bool:
    args = shlex.split(command)
    skip = False
    for arg in args[1:]:
        if skip:
            skip = False
            continue
        if arg in ("-i", "--include") or arg.startswith("-D"):  # -D-: the headers to stdout too
            return True
        if arg in CURL_VALUED:
            skip = True
        elif re.fullmatch(r"-[a-zA-Z]*i[a-zA-Z]*", arg):  # -si
            return True
    return False


def split_shown(lines: list[str], include: bool) -> Shown:
    if not include or not lines:
        return Shown(None, [], False, list(lines))
    headers: list[tuple[str, str]] = []
    elided = False
    k = 1
    while k < len(lines):
        if lines[k] == "...":
            elided = True
        elif (found := HEADER.fullmatch(lines[k])) and not lines[k].startswith(("{", "[")):
            headers.append((found[1], found[2]))
        else:
            break
        k += 1
    return Shown(lines[0], headers, elided, lines[k:])


def _json(lines: list[str]) -> Any:
    try:
        return json.loads("\n".join(lines))
    except ValueError:
        return None


def answering_model(command: str, shown: Shown) -> str | None:
    """The model whose numbers an output holds: the body's `model`, else `X-Model`, else the request's."""
    body = _json(shown.body)
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return str(body["model"])
    for name, value in shown.headers:
        if name.lower() == "x-model":
            return value.split()[0]
    for name in re.findall(r"""["']?model["']?\s*[:=]\s*["']([^"']+)["']""", command):
        return str(name)
    return None


def tolerance(model: str | None) -> float:
    return FINE_TUNED_TOLERANCE if model in FINE_TUNED else FIXED_TOLERANCE


def diff_json(expected: Any, actual: Any, tol: float, path: str = "") -> list[str]:
    where = path or "the body"
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{where}: README has {k!r}, the answer does not" for k in expected if k not in actual]
        out += [f"{where}: the answer has {k!r}, README does not" for k in actual if k not in expected]
        for key in (k for k in expected if k in actual):
            kind = VOLATILE_KEYS.get(key)
            if kind is not None and type(expected[key]) is kind and type(actual[key]) is kind:
                continue
            out += diff_json(expected[key], actual[key], tol, f"{path}.{key}" if path else key)
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: README shows {len(expected)} items, the answer has {len(actual)}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += diff_json(e, a, tol, f"{path}[{i}]")
        return out
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isclose(expected, actual, rel_tol=0, abs_tol=tol):
            return []
        return [f"{where}: README {expected!r}, the answer {actual!r} (tolerance {tol:g})"]
    if expected == actual and type(expected) is type(actual):
        return []
    return [f"{where}: README {json.dumps(expected)}, the answer {json.dumps(actual)}"]


def diff_text(expected: str, actual: str, tol: float) -> bool:
    """Whether two lines agree: the same text around their numbers, the numbers within `tol`."""
    if NUMBER.split(expected) != NUMBER.split(actual):
        return False
    pairs = zip(NUMBER.findall(expected), NUMBER.findall(actual), strict=True)
    return all(e == a if "." not in e + a else abs(float(e) - float(a)) <= tol for e, a in pairs)


def compare(expected: list[str], actual: list[str], include: bool, tol: float) -> list[str]:
    """Every way `actual` (what the server answered, as README would show it) differs from `expected`."""
    want, got = split_shown(expected, include), split_shown(actual, include)
    out: list[str] = []
    if want.status != got.status:
        out.append(f"status: README {want.status!r}, the answer {got.status!r}")
    answered = {name.lower(): value for name, value in got.headers}
    for name, value in want.headers:
        if name.lower() not in answered:
            out.append(f"header {name}: not in the answer")
        elif not VOLATILE_HEADERS.fullmatch(name) and answered[name.lower()] != value:
            out.append(f"header {name}: README {value!r}, the answer {answered[name.lower()]!r}")
    want_json, got_json = _json(want.body), _json(got.body)
    if want_json is not None and got_json is not None:
        return out + diff_json(want_json, got_json, tol)
    if len(want.body) != len(got.body):
        return [*out, f"README shows {len(want.body)} lines, the answer has {len(got.body)}: {got.body!r}"]
    for i, (e, a) in enumerate(zip(want.body, got.body, strict=True)):
        if not diff_text(e, a, tol):
            out.append(f"line {i + 1}: README {e!r}, the answer {a!r}")
    return out


# -- running --------------------------------------------------------------------------------------


@dataclass
class Result:
    example: Example
    actual: list[str] | None  # what README should show; None: the example did not run
    problems: list[str]


def _client_env() -> dict[str, str]:
    # Straight to the local server, whatever proxy the environment names.
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def _http_response(stdout: str, include: bool) -> list[str]:
    if not include:
        return stdout.rstrip("\n").split("\n")
    head, _, body = stdout.partition("\r\n\r\n")
    return [*head.split("\r\n"), *body.rstrip("\n").split("\n")]


def run_curl(example: Example, url: str) -> Result:
    args = shlex.split(example.command)
    if args[0] != "curl":
        if example.output:
            return Result(example, None, ["a command that is not curl shows output: mark its block not run"])
        return Result(example, example.output, [])
    args = [DOCUMENTED_PORT.sub(url, arg) for arg in args]
    done = subprocess.run(args, capture_output=True, timeout=120, env=_client_env())  # bytes: the headers' CRLF
    if done.returncode != 0:
        return Result(example, None, [f"curl exited {done.returncode}: {done.stderr.decode().strip()}"])
    include = includes_headers(example.command)
    answer = split_shown(_http_response(done.stdout.decode(), include), include)
    readme = split_shown(example.output, include)
    if include:  # the README's choice of headers, with the answer's values
        values = {name.lower(): (name, value) for name, value in answer.headers}
        answer.headers = [values[n.lower()] for n, _ in readme.headers if n.lower() in values]
        answer.elided = True
    actual = [*([answer.status] if answer.status else []), *(f"{n}: {v}" for n, v in answer.headers)]
    actual += ["..."] if include else []
    actual += answer.body
    tol = tolerance(answering_model(example.command, answer))
    return Result(example, actual, compare(example.output, actual, include, tol))


def run_python(example: Example, url: str) -> Result:
    code = DOCUMENTED_PORT.sub(url, example.command)
    with tempfile.TemporaryDirectory(prefix="readme-snippet-") as cwd:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd, env=_client_env()
        )
    if done.returncode != 0:
        return Result(example, None, [f"exited {done.returncode}: {done.stderr.strip()[-2000:]}"])
    actual = done.stdout.rstrip("\n").split("\n") if done.stdout else []
    if example.span is None:
        return Result(example, [], [])
    tol = FINE_TUNED_TOLERANCE if any(name in code for name in FINE_TUNED) else FIXED_TOLERANCE
    return Result(example, actual, compare(example.output, actual, False, tol))


def _repository(setup: Setup, models: Path, root: Path) -> Path:
    """A model repository for a block's setup: links to the default models, copies renamed."""
    if not setup.models and not setup.building:
        return models
    repo = root / "models"
    repo.mkdir()
    chosen = setup.models or tuple((p.name, p.name) for p in models.iterdir() if (p / "manifest.json").is_file())
    for name, source in chosen:
        if name == source:
            (repo / name).symlink_to((models / source).resolve())
            continue
        (repo / name).mkdir()
        for path in (models / source).iterdir():
            if path.name != "manifest.json":
                (repo / name / path.name).symlink_to(path.resolve())
        manifest = json.loads((models / source / "manifest.json").read_text())
        (repo / name / "manifest.json").write_text(json.dumps({**manifest, "name": name}, indent=2))
    if setup.building:
        entries = {name: {"task": task, "state": state} for name, task, state in setup.building}
        (repo / ".building.json").write_text(json.dumps(entries))
    return repo


@contextmanager
def serving(setup: Setup, models: Path) -> Iterator[str]:
    """`bertserve serve` for one setup, on a free port, in a clean environment; its base URL."""
    with tempfile.TemporaryDirectory(prefix="readme-examples-") as tmp:
        log = Path(tmp) / "server.log"
        saved = {k: v for k, v in os.environ.items() if k.startswith(("BERTSERVE_", "OTEL_"))}
        for key in saved:
            del os.environ[key]
        try:
            server = Server(_repository(setup, models, Path(tmp)), env=dict(setup.env), log=log).start()
            try:
                server.wait_ready()
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
            try:
                yield server.url
            finally:
                server.terminate()
        finally:
            os.environ.update(saved)


def run(path: Path = README, models: Path = DEFAULT_MODELS) -> list[Result]:
    """Every example of the file, one server per setup (in the order they first appear)."""
    examples = parse(path.read_text()).examples
    setups = list(dict.fromkeys(e.setup for e in examples))
    results: dict[int, Result] = {}
    for setup in setups:
        with serving(setup, models) as url:
            for example in (e for e in examples if e.setup == setup):
                runner = run_curl if example.kind == "curl" else run_python
                results[id(example)] = runner(example, url)
    return [results[id(e)] for e in examples]


def problems(results: list[Result], path: Path = README) -> list[str]:
    name = path.name if path.parent == REPO else str(path)
    return [
        f"{name}:{r.example.line}: {r.example.title}\n    " + "\n    ".join(r.problems) for r in results if r.problems
    ]


def write(path: Path, results: list[Result]) -> None:
    lines = path.read_text().split("\n")
    for result in sorted(results, key=lambda r: r.example.span or (0, 0), reverse=True):
        if result.actual is not None and result.example.span is not None:
            start, end = result.example.span
            lines[start:end] = result.actual
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the server's answers into the file")
    mode.add_argument("--check", action="store_true", help="report every difference (the default)")
    parser.add_argument("--file", type=Path, default=README, help="the Markdown file (default: README.md)")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="the default models (default: models/)")
    args = parser.parse_args(argv)
    results = run(args.file, args.models)
    found = problems(results, args.file)
    if args.write:
        write(args.file, results)
        failed = problems([r for r in results if r.actual is None], args.file)
        changed = sum(1 for r in results if r.actual is not None and r.actual != r.example.output)
        print(f"{args.file.name}: {len(results)} examples run, {changed} with new output", file=sys.stderr)
        print("\n".join(failed), file=sys.stderr)
        return 1 if failed else 0
    print("\n".join(found) or f"{args.file.name}: every example ({len(results)}) answers as shown", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
