"""`bertserve serve | export`: one-line errors and non-zero exits, never a traceback for
what a user got wrong."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from service.kinds import KINDS, MODEL_KINDS

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, `bertserve export: error: ...`, exit 2, as every other
    error: argparse's default prints the whole usage block first. Subcommand parsers are
    made with the parent's class, so they answer the same way."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    try:
        export_checkpoint(opts)
    except ExportError as exc:
        print(f"bertserve export: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.server import serve

    return serve(models=args.models, host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bertserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve every model directory under --models")
    serve.add_argument("--models", help="model repository (env BERTSERVE_MODELS, default models/)")
    serve.add_argument("--host", help="bind address (env BERTSERVE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env BERTSERVE_PORT, default 8000)")
    serve.set_defaults(func=_serve)

    export = sub.add_parser("export", help="export a Hugging Face checkpoint to a verified model directory")
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
    export.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
