"""The ``mtl-perception`` command line: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers) -> None`` which adds its parser and
sets ``func`` (``args -> int``). Adding a subcommand is one module plus one line in
``SUBCOMMANDS``. Modules are imported lazily so ``--help`` stays fast and a missing optional
dependency only breaks the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand name, module path). Order is the order shown in --help.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("model-info", "mtl_perception.cli.model_info"),
    ("bench-decoders", "mtl_perception.cli.bench_decoders"),
    ("train", "mtl_perception.cli.train"),
    ("eval", "mtl_perception.cli.eval"),
    ("bench", "mtl_perception.cli.bench"),
    ("export", "mtl_perception.cli.export"),
    ("build-engine", "mtl_perception.cli.build_engine"),
    ("synth", "mtl_perception.cli.synth"),
    ("realdata-bag", "mtl_perception.cli.realdata_bag"),
    ("bench-node", "mtl_perception.cli.bench_node"),
    ("node-grid", "mtl_perception.cli.node_grid"),
    ("replay-eval", "mtl_perception.cli.replay_eval"),
    ("soak", "mtl_perception.cli.soak"),
    ("play", "mtl_perception.cli.play"),
    ("live-eval", "mtl_perception.cli.live_eval"),
    ("ablation", "mtl_perception.cli.ablation"),
    ("demo", "mtl_perception.cli.demo"),
]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-perception",
        description="Multi-task perception (semantic segmentation + metric depth): "
        "models, training, evaluation, deployment and ROS 2 tools.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module in SUBCOMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from mtl_perception import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"mtl-perception {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mtl-perception {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
