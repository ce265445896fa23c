"""The `bertserve` command: `serve`, `export` and `run-batch`.

Usage mistakes are one line and exit 2, never a traceback. No option may be shortened: an
abbreviation that argparse would complete (`--model` for `--models`) is refused rather than
guessed, so a typo never passes for another option. The help of `serve` lists every setting,
read from service/settings.py, so it cannot drift from what the service reads.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

from service import __version__
from service.kinds import KINDS, MODEL_KINDS
from service.settings import Settings

EXIT_USAGE = 2

DESCRIPTION = """\
Serve fine-tuned BERT-family models (BERT, DistilBERT, RoBERTa, MiniLM) over
HTTP: classification, embeddings, reranking and named entities, exported once
to ONNX and batched on onnxruntime."""

EXAMPLES = """\
examples:
  bertserve serve                       serve models/ on http://127.0.0.1:8000
  BERTSERVE_PORT=8100 bertserve serve   on port 8100: every setting is a BERTSERVE_* variable
  bertserve serve --help                its options, and every setting by name
  bertserve export path/to/checkpoint models/my-classifier --task classify --int8
  bertserve run-batch --input requests.jsonl --output answers.jsonl --url http://127.0.0.1:8000"""

SERVE_DESCRIPTION = """\
Serve every model directory of the model repository over HTTP. The port answers
at once; /health/ready turns 200 once the models are loaded and warmed up, and
the log says "ready: serving N models on http://HOST:PORT". The API: /docs."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (the settings are a table), and the commands listed
    without argparse's line naming their group's metavar above them."""

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        return text.split("\n", 1)[1] if action.nargs == argparse.PARSER else text

    def add_argument(self, action: argparse.Action) -> None:
        # argparse measures the commands without the indent it then writes them with, so the
        # longest name (run-batch) would have its help pushed to the next line.
        super().add_argument(action)
        if action.nargs == argparse.PARSER:
            longest = max(len(self._format_action_invocation(sub)) for sub in self._iter_indented_subactions(action))
            self._action_max_length = max(self._action_max_length, longest + self._current_indent + 2)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, `bertserve export: error: ...`, exit 2, as every other
    error: argparse's default prints the whole usage block first. Subcommand parsers are
    made with the parent's class, so they answer the same way."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _variable(name: str) -> str:
    """`BERTSERVE_PORT, default 8000`: the setting an option overrides, and its default."""
    return f"BERTSERVE_{name.upper()}, default {Settings.model_fields[name].default}"


def _shorten(text: str, room: int) -> str:
    """`text` within `room` characters: whole when it fits, else up to the last clause break
    that fits (`, ` `: ` ` (` `; `) when that keeps half the room, else cut at a word, with
    "..."."""
    if len(text) <= room:
        return text
    breaks = [m.start() for m in re.finditer(r", |: | \(|; ", text) if room // 2 <= m.start() <= room]
    if breaks:
        return text[: breaks[-1]]
    return text[: room - 3].rsplit(" ", 1)[0] + "..."


def settings_help(width: int | None = None) -> str:
    """Every setting by its variable, with the first part of its description, one line each
    within the terminal's width: the full text and the defaults are in the README."""
    width = width or shutil.get_terminal_size().columns - 2
    names = {name: f"BERTSERVE_{name.upper()}" for name in Settings.model_fields}
    column = max(map(len, names.values())) + 4
    lines = [
        f"settings: {len(names)}, each an environment variable; --models, --host and",
        "--port override the first three. Their defaults and full descriptions:",
        "README.md, section Configuration.",
    ]
    for name, variable in names.items():
        text = (Settings.model_fields[name].description or "").split("; ")[0]
        lines.append(f"  {variable:<{column - 2}}{_shorten(text, max(24, width - column))}")
    return "\n".join(lines)


def _export(args: argparse.Namespace) -> int:
    from service.export import ExportError
    from service.export.exporter import ExportOptions, export_checkpoint

    opts = ExportOptions(
        checkpoint=Path(args.checkpoint),
        out_dir=Path(args.out_dir),
        task=args.task,
        name=args.name,
        pooling=args.pooling,
        max_length=args.max_length,
        int8=args.int8,
        fp16=args.fp16,
        eval_data=Path(args.eval_data) if args.eval_data else None,
        force=args.force,
        pairs=args.pairs,
    )

    def stage(name: str) -> None:
        # One line per stage on stdout, for the `serve --model` that runs this export.
        print(f"stage: {name}", flush=True)

    try:
        export_checkpoint(opts, stage=stage) if args.report_stages else export_checkpoint(opts)
    except ExportError as exc:
        print(f"bertserve export: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.server import serve

    return serve(models=args.models, host=args.host, port=args.port, sources=args.sources)


class _ModelOption(argparse.Action):
    """`--model SOURCE` opens a model; --task, --name, ... after it set that model's options."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, value: Any, option: str | None = None) -> None:
        from service.sources.spec import Source, with_option

        sources = list(getattr(namespace, "sources", None) or [])
        if self.dest == "model":
            sources.append(Source(str(value)))
        elif not sources:
            parser.error(f"{option} applies to the --model before it: give --model SOURCE first")
        else:
            sources[-1] = with_option(sources[-1], self.dest, value)
        namespace.sources = sources


def _add_model_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "serving a checkpoint",
        "--model is repeatable, and each option below applies to the --model before it\n"
        "(BERTSERVE_MODEL_SOURCES). The task is read from the checkpoint; the export\n"
        "runs once, verified, into the export cache (BERTSERVE_CACHE_DIR).",
    )
    group.add_argument(
        "--model",
        action=_ModelOption,
        metavar="SOURCE",
        help="a Hugging Face checkpoint folder, an exported model directory, or a hub id org/name[@revision]",
    )
    group.add_argument("--task", action=_ModelOption, choices=MODEL_KINDS, help="the task, over what was read")
    group.add_argument("--name", action=_ModelOption, help="model name served by the API (default: the folder's)")
    group.add_argument("--max-length", action=_ModelOption, type=int, metavar="N", help="max tokens per input")
    for flag, what in (
        ("pairs", "classify: a classifier trained on text pairs"),
        ("int8", "a verified int8 variant (default: on CPU hosts; --no-int8: none)"),
        ("fp16", "a verified fp16 variant (default: on CUDA hosts; --no-fp16: none)"),
    ):
        group.add_argument(f"--{flag}", action=_ModelFlag, nargs=0, help=what)
        group.add_argument(f"--no-{flag}", action=_ModelFlag, nargs=0, dest=flag, help=argparse.SUPPRESS)


class _ModelFlag(_ModelOption):
    def __call__(self, parser: Any, namespace: argparse.Namespace, value: Any, option: str | None = None) -> None:
        super().__call__(parser, namespace, not str(option).startswith("--no-"), option)


def _add_serve(sub: Any) -> argparse.ArgumentParser:
    serve: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve the models of the model repository (models/) over HTTP",
        description=SERVE_DESCRIPTION,
        epilog=settings_help(),
    )
    for name, metavar, what in (("models", "DIR", "model repository"), ("host", "HOST", "bind address")):
        serve.add_argument(f"--{name}", metavar=metavar, help=f"{what} ({_variable(name)})")
    serve.add_argument("--port", type=int, metavar="PORT", help=f"TCP port ({_variable('port')})")
    _add_model_options(serve)
    serve.set_defaults(func=_serve, sources=[])
    return serve


def _add_export(sub: Any) -> argparse.ArgumentParser:
    export: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="export a Hugging Face checkpoint to a verified model directory",
        description="Export a local Hugging Face checkpoint to ONNX, verify it against PyTorch, and write a model "
        "directory the service can serve. Needs the export extra: pip install '.[export]'.",
    )
    export.add_argument("checkpoint", help="local Hugging Face checkpoint directory")
    export.add_argument("out_dir", help="model directory to write")
    export.add_argument(
        "--task",
        choices=MODEL_KINDS,
        required=True,
        help="; ".join(f"{kind}: {info.help}" for kind, info in KINDS.items()),
    )
    export.add_argument("--pairs", action="store_true", help="classify: a classifier trained on text pairs")
    export.add_argument("--name", help="model name served by the API (default: OUT_DIR's name)")
    export.add_argument("--pooling", choices=["mean", "cls"], help="embedding pooling when the checkpoint does not say")
    export.add_argument("--max-length", type=int, help="max tokens per input (default: the checkpoint's)")
    export.add_argument("--int8", action="store_true", help="add a verified int8 variant (CPU)")
    export.add_argument("--fp16", action="store_true", help="add a verified fp16 variant (CUDA)")
    export.add_argument(
        "--eval-data",
        help="CSV or JSONL of text,label (text,text_pair,label with --pairs) to gate classification variants; "
        'entities: JSONL of {"text", "entities": [{"start", "end", "label"}]} to gate them on entity F1',
    )
    export.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    export.add_argument("--report-stages", action="store_true", help=argparse.SUPPRESS)
    export.set_defaults(func=_export)
    return export


def _cache(args: argparse.Namespace) -> int:
    from service.sources.listing import list_cache, prune_cache

    if args.action == "list":
        return list_cache()
    if args.older_than is None and not args.all:
        print("bertserve cache prune: error: give --older-than DAYS or --all", file=sys.stderr)
        return EXIT_USAGE
    return prune_cache(None if args.all else args.older_than)


def _add_cache(sub: Any) -> argparse.ArgumentParser:
    cache: argparse.ArgumentParser = sub.add_parser(
        "cache",
        help="list or prune the export cache of `serve --model`",
        description="The export cache of `serve --model` (BERTSERVE_CACHE_DIR, default $XDG_CACHE_HOME/bertserve "
        "or ~/.cache/bertserve): one verified model directory per checkpoint content and export options.",
    )
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="each entry: key, name, task, variants, size, last use, source")
    prune = actions.add_parser(
        "prune",
        help="remove entries not used by a start for DAYS days (or all), and unfinished exports",
        description="Remove the entries no start has used for --older-than DAYS days (every entry with --all), "
        "and the folders of exports that did not finish. An entry being exported is left alone; a running "
        "server keeps the models it has loaded, but will not find a removed entry on its next start.",
    )
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="unused for this many days")
    prune.add_argument("--all", action="store_true", help="every entry")
    cache.set_defaults(func=_cache)
    return cache


RUN_BATCH_DESCRIPTION = """\
Answer a file of requests in OpenAI's batch format (one JSON object a line:
custom_id, method POST, url a model route such as /classify, body) into an output
file in the same format. With --url, a running service answers at batch priority;
without it, this process does, on the model repository (--models), with no HTTP.
An output that already holds some custom_ids is appended to and those lines are
skipped; a bad line gets its error in the output and the job goes on."""


NICE = 10


def _run_batch(args: argparse.Namespace) -> int:
    from service.batch_jobs.job import Job, run
    from service.batch_jobs.lines import DuplicateId

    job = Job(
        Path(args.input),
        Path(args.output),
        url=args.url,
        models=Path(args.models or Settings.model_fields["models"].default),
        concurrency=args.concurrency,
        api_key=args.api_key,
    )
    if not job.input.is_file():
        print(f"bertserve run-batch: error: no input file {job.input}", file=sys.stderr)
        return EXIT_USAGE
    if job.url is not None and args.nice:
        # Bulk work yields the CPU to live serving where both share a host: the job's client
        # spent about 1 ms of CPU a line, and on 2 cores, at the default niceness, live
        # requests waited behind it (docs/benchmarks.md, "Bulk work beside live traffic (`run-batch`)").
        os.nice(args.nice)
    try:
        _event_loop_run(run(job))
    except DuplicateId as exc:
        print(f"bertserve run-batch: error: {exc}: custom_ids must be unique", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130  # what was written is whole lines: run it again to resume
    return 0


def _event_loop_run(work: Coroutine[Any, Any, object]) -> None:
    """On uvloop where it is installed, as the server runs: less of the CPU per request goes
    to the loop, and on a small box the job's client shares the CPUs with the service."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(work)
    else:
        uvloop.run(work)


def _add_run_batch(sub: Any) -> argparse.ArgumentParser:
    from service.batch_jobs.job import DEFAULT_CONCURRENCY

    job: argparse.ArgumentParser = sub.add_parser(
        "run-batch", help="answer a file of batch requests", description=RUN_BATCH_DESCRIPTION
    )
    job.add_argument("--input", required=True, metavar="FILE", help="requests, one JSON object a line")
    job.add_argument("--output", required=True, metavar="FILE", help="answers, appended to (resumed) if it exists")
    job.add_argument("--url", metavar="URL", help="a running service, e.g. http://127.0.0.1:8000; none: in-process")
    job.add_argument("--models", metavar="DIR", help=f"in-process: model repository ({_variable('models')})")
    job.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight (default {DEFAULT_CONCURRENCY})",
    )
    job.add_argument("--api-key", metavar="KEY", help="--url: the service's API key, if it has keys")
    job.add_argument(
        "--nice",
        type=int,
        default=NICE,
        metavar="N",
        help=f"--url: lower this process's CPU priority by N, so a service on the same host comes first "
        f"(default {NICE}; 0: as started)",
    )
    job.set_defaults(func=_run_batch)
    return job


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(prog="bertserve", description=DESCRIPTION, epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"bertserve {__version__}", help="show the version")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    commands = {
        "serve": _add_serve(sub),
        "export": _add_export(sub),
        "run-batch": _add_run_batch(sub),
        "cache": _add_cache(sub),
    }
    return parser, commands


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["serve", "serve"]:
        # The images' entrypoint is `bertserve serve`: `docker run <image> serve --model ...`,
        # the command named again as a container's arguments often do, means the same.
        argv = argv[1:]
    parser, commands = _build()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command they were given to: its help is the one to read
        commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
