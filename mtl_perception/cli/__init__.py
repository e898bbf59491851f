"""The ``mtl-perception`` command line: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers) -> None`` which adds its parser and
sets ``func`` (``args -> int``). Adding a subcommand is one module plus one line in
``SUBCOMMANDS``. Modules are imported lazily so ``--help`` stays fast and a missing optional
dependency only breaks the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

# (subcommand name, module path). Order is the order shown in --help.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("model-info", "mtl_perception.cli.model_info"),
    ("bench-decoders", "mtl_perception.cli.bench_decoders"),
    ("train", "mtl_perception.cli.train"),
    ("eval", "mtl_perception.cli.eval"),
    ("calibrate", "mtl_perception.cli.calibrate"),
    ("average", "mtl_perception.cli.average"),
    ("wise-ft", "mtl_perception.cli.wise_ft"),
    ("resize-input", "mtl_perception.cli.resize_input"),
    ("logit-adjust", "mtl_perception.cli.logit_adjust"),
    ("bench", "mtl_perception.cli.bench"),
    ("export", "mtl_perception.cli.export"),
    ("build-engine", "mtl_perception.cli.build_engine"),
    ("cache", "mtl_perception.cli.cache"),
    ("synth", "mtl_perception.cli.synth"),
    ("realdata-bag", "mtl_perception.cli.realdata_bag"),
    ("bench-node", "mtl_perception.cli.bench_node"),
    ("node-grid", "mtl_perception.cli.node_grid"),
    ("replay-eval", "mtl_perception.cli.replay_eval"),
    ("soak", "mtl_perception.cli.soak"),
    ("play", "mtl_perception.cli.play"),
    ("live-eval", "mtl_perception.cli.live_eval"),
    ("wait-ready", "mtl_perception.cli.wait_ready"),
    ("ablation", "mtl_perception.cli.ablation"),
    ("demo", "mtl_perception.cli.demo"),
]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


# The error contract: bad input of any kind -> one line on stderr (the input, the problem, the fix),
# exit code 2, no traceback (``--debug`` or MTL_PERCEPTION_DEBUG=1 shows it). Besides CLIError, these
# library error types mean bad input; they are looked up only in modules already imported (an error
# of a module never imported cannot be raised), so --help stays fast. Anything else is a bug: traceback.
INPUT_ERRORS: tuple[tuple[str, str], ...] = (
    ("mtl_perception.model.errors", "ConfigError"),
    ("mtl_perception.model.errors", "CheckpointError"),
    ("mtl_perception.deploy.interface", "EngineError"),
    ("mtl_perception.data.bags", "BagError"),
    ("mtl_perception.imaging", "ImageDecodeError"),
    ("mtl_perception.data.realdata", "RealDataError"),
    ("mtl_perception.evaluate.fleet", "FleetError"),
    ("mtl_perception.evaluate.replay", "ReportDirError"),
    ("mtl_perception.ros.harness", "AttachError"),
    ("yaml", "YAMLError"),
    ("safetensors", "SafetensorError"),
    ("onnx.onnx_cpp2py_export.checker", "ValidationError"),
    ("google.protobuf.message", "DecodeError"),
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message; see `prog --help` `` (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)}; see `{self.prog} --help`\n")


def _checked(convert):
    """An argparse type: ``convert`` plus the rule every numeric option follows (finite, >= 0)."""

    def check(text: str):
        value = convert(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
        return value

    check.__name__ = getattr(convert, "__name__", "number")  # argparse names it in "invalid int value"
    return check


def _harden(parser: argparse.ArgumentParser) -> None:
    """Every subcommand: numeric options checked, ``--debug`` accepted after the subcommand too."""
    for action in parser._actions:
        if action.type in (int, float):
            action.type = _checked(action.type)
        if isinstance(action, argparse._SubParsersAction):  # nested actions (`cache prune`) follow the same rule
            for child in action.choices.values():
                _harden(child)
    if "--debug" not in parser._option_string_actions:
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mtl-perception",
        description="Multi-task perception (semantic segmentation + metric depth): "
        "models, training, evaluation, deployment and ROS 2 tools.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (also MTL_PERCEPTION_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS:
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:  # a ROS-only install without cv2: the other commands still work
            if (exc.name or "").split(".")[0] == "mtl_perception":
                raise  # our own module missing is a bug, not an optional dependency
            # no option prefix: any arguments are taken, and running it says what is missing
            p = sub.add_parser(name, help=f"(unavailable here: {exc})", add_help=False, prefix_chars="\0")
            p.add_argument("rest", nargs="*")
            p.set_defaults(func=_unavailable(exc))
    for p in sub.choices.values():
        if p.prefix_chars != "\0":  # not the placeholder of an unavailable command
            _harden(p)
    return parser


def _unavailable(exc: ModuleNotFoundError):
    def run(args: argparse.Namespace) -> int:
        raise CLIError(f"unavailable: {exc} (install the missing package: `pip install -r requirements.txt`)")

    return run


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _input_error(exc: BaseException) -> bool:
    if isinstance(exc, (CLIError, OSError, UnicodeError)):
        return True
    for module, name in INPUT_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def _string_values(args: argparse.Namespace) -> list[str]:
    return [v for value in vars(args).values() for v in (value if isinstance(value, list) else [value])
            if isinstance(v, str)]  # fmt: skip


def _paths_given(args: argparse.Namespace) -> list[str]:
    """``--option value`` for every option whose value names an existing file or folder."""
    out = []
    for key, value in vars(args).items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v and os.path.exists(v):
                out.append(f"--{key.replace('_', '-')} {v}")
    return out


def error_message(exc: BaseException, args: argparse.Namespace) -> str:
    """The one line for an input error: what the exception says, plus the input when it does not name it."""
    if isinstance(exc, UnicodeDecodeError):
        text = (
            f"not UTF-8 text ({exc.reason} at byte {exc.start}): a binary file was given where a text "
            "(YAML/JSON) file is expected; pass the text file"
        )
    elif isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}; check the path"
    elif type(exc).__module__.startswith("yaml"):
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        text = f"not valid YAML ({getattr(exc, 'problem', None) or type(exc).__name__}{where}); fix the YAML syntax"
    else:
        text = _one_line(exc) or type(exc).__name__
        if not type(exc).__module__.startswith("mtl_perception"):  # a third-party message: say what it is
            text = f"{type(exc).__name__}: {text}"
    named = [v for v in _string_values(args) if len(v) > 3 and ("/" in v or "." in v)]
    given = _paths_given(args)
    if given and not any(v in text for v in named):  # the message names no input: say which were given
        text += f" (input: {', '.join(given)})"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("MTL_PERCEPTION_DEBUG", "") not in ("", "0")
    if args.version:
        from mtl_perception import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, in the handler below, not at exit
        return code
    except KeyboardInterrupt:
        print(f"mtl-perception {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`... | head`): stop quietly, as a tool killed by SIGPIPE would; stdout to
        # /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if not _input_error(exc):
            raise  # a bug, not bad input: the traceback is what a report needs
        if debug:
            import traceback

            traceback.print_exc()
        print(f"mtl-perception {args.command}: error: {error_message(exc, args)}", file=sys.stderr)
        return 2


def run() -> None:
    """Process entry point (console script, ``python -m mtl_perception.cli``): ``main()``, then an exit
    that skips the interpreter's teardown when a command used rclpy (``ros.shutdown.exit_process``)."""
    code = main()
    if "rclpy" in sys.modules:
        from mtl_perception.ros.shutdown import exit_process

        exit_process(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
