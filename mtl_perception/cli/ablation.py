"""``mtl-perception ablation``: train the runs of an ablation recipe with one budget, evaluate
them on the same frames, and write one table.

Two kinds of recipe (told apart by their keys):

* decoder ablation (``config/train/ablation.yaml``, ``variants:``): every decoder variant and the
  two single-task models; params, GFLOPs, latency, mIoU, RMSE, AbsRel, Delta_m.

      mtl-perception ablation --config config/train/ablation.yaml --docs docs/ablation.md

* sim-to-real ingredient ablation (``config/train/sim2real_ablation.yaml``, ``arms:``): the
  sim-to-real recipe with one ingredient off per arm (pretrained backbone, canonical depth, kept
  aspect, randomization); each arm scored on the real frames (``--realdata``, default
  ../shared/realdata) and held-out synthetic frames, and its delta against ``full``.

      mtl-perception ablation --config config/train/sim2real_ablation.yaml --docs docs/sim2real_ablation.md

  (quick look: --steps 5 --arms full,scratch --no-realdata, with another --out)

Runs go to ``--out/<name>/`` (default runs/ablation or runs/sim2real). A run whose final
checkpoint exists with the same recipe is skipped, so a second invocation only re-evaluates;
``--resume`` continues interrupted runs from their latest periodic checkpoint; ``--force``
retrains everything. Decoder ablation only: latency is measured in a separate pass after all
training (``--no-latency`` skips it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablation",
        help="train + evaluate an ablation (decoders with Delta_m, or sim-to-real ingredients on real frames)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", default=None, help="ablation recipe YAML (default: the package's config/train/ablation.yaml)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="folder for the runs' checkpoints (default runs/ablation; runs/sim2real for an arms recipe)",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="decoder recipe: subset of runs, e.g. baseline mlore (the single-task references are always kept)",
    )
    p.add_argument(
        "--arms",
        nargs="+",
        default=None,
        help="arms recipe: subset of arms, e.g. full,scratch (the reference arm is always kept)",
    )
    p.add_argument(
        "--realdata", default=None, metavar="DIR", help="arms recipe: real frames folder (overrides the recipe)"
    )
    p.add_argument("--no-realdata", action="store_true", help="arms recipe: skip the real frames (columns left empty)")
    p.add_argument("--steps", type=int, default=None, help="override the recipe's training steps")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for training and evaluation (overrides the recipe's engine/latency threads); "
        "1 is about twice as fast as 2 on a 2-core CPU that another training run keeps busy",
    )
    p.add_argument("--eval-frames", type=int, default=None, help="held-out synthetic frames to evaluate on")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their latest checkpoint")
    p.add_argument("--force", action="store_true", help="retrain runs even when their final checkpoint exists")
    p.add_argument(
        "--no-latency", action="store_true", help="decoder recipe: skip the latency pass (column left empty)"
    )
    p.add_argument("--docs", default=None, help="write the markdown table here (plus .json and images/<stem>.png)")
    p.add_argument("--no-plot", action="store_true", help="with --docs: no bar plot PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines only)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtl_perception.evaluate import ablation as ab
    from mtl_perception.evaluate import sim2real_ablation as s2r
    from mtl_perception.model import CheckpointError, ConfigError

    config = args.config
    if config is None:
        from mtl_perception.paths import package_share_dir

        config = str(package_share_dir() / "config" / "train" / "ablation.yaml")
    arms_recipe = s2r.is_arms_recipe(config)
    out = args.out or ("runs/sim2real" if arms_recipe else "runs/ablation")
    if arms_recipe and args.variants:
        raise CLIError(f"{config} is an arms recipe: choose runs with --arms, not --variants")
    if not arms_recipe and (args.arms or args.realdata or args.no_realdata):
        flag = "--arms" if args.arms else "--realdata" if args.realdata else "--no-realdata"
        raise CLIError(f"{flag} applies to an arms recipe (e.g. config/train/sim2real_ablation.yaml), not {config}")
    if args.realdata and args.no_realdata:
        raise CLIError("--realdata and --no-realdata exclude each other")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be >= 1, got {args.threads}")
    command = "mtl-perception " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    if not command.startswith("mtl-perception ablation"):  # called in-process (tests): rebuild from args
        command = f"mtl-perception ablation --config {config} --out {out}"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    progress = not args.no_progress and sys.stderr.isatty()
    try:
        if arms_recipe:
            arms = [a.strip() for item in args.arms for a in item.split(",") if a.strip()] if args.arms else None
            if args.arms and not arms:
                raise CLIError("--arms needs at least one arm name")
            cfg = s2r.load_sim2real_config(
                config, args.steps, args.eval_frames, arms, realdata=args.realdata, no_realdata=args.no_realdata
            )
            if args.threads:
                cfg["engine"]["threads"] = args.threads
            results = s2r.run_sim2real(
                cfg, out, resume=args.resume, force=args.force, progress=progress, log=log, command=command
            )
            docs, render = s2r, s2r.render_markdown
        else:
            cfg = ab.load_ablation_config(config, args.steps, args.eval_frames, args.variants)
            if args.threads:
                cfg["latency"]["threads"] = args.threads
            results = ab.run_ablation(
                cfg,
                out,
                resume=args.resume,
                force=args.force,
                latency=not args.no_latency,
                progress=progress,
                log=log,
                command=command,
            )
            docs, render = ab, ab.render_markdown
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    if args.docs:
        try:
            written = docs.write_docs(results, args.docs, plot=not args.no_plot)
        except OSError as exc:
            raise CLIError(f"cannot write --docs {args.docs}: {exc.strerror or exc}") from exc
        log("[ablation] wrote " + ", ".join(str(p) for p in written.values()))
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    else:
        print(render(results))
    return 0
