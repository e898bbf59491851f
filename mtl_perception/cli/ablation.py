"""``mtl-perception ablation``: train every decoder variant and the two single-task models with
one recipe, evaluate them on the same held-out frames, and write one table (params, GFLOPs,
latency, mIoU, RMSE, AbsRel, Delta_m).

    mtl-perception ablation --config config/train/ablation.yaml --docs docs/ablation.md

Runs go to ``--out/<name>/`` (baseline, moe, mlore, taskexpert, meco, single_semseg,
single_depth). A run whose final checkpoint exists with the same recipe is skipped, so a second
invocation only re-evaluates and re-measures; ``--resume`` continues interrupted runs from their
latest periodic checkpoint; ``--force`` retrains everything. Latency is measured in a separate
pass after all training (``--no-latency`` skips it).
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
        help="train + evaluate every decoder variant and the single-task models; one table with Delta_m",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", default=None, help="ablation recipe YAML (default: the package's config/train/ablation.yaml)"
    )
    p.add_argument("--out", default="runs/ablation", help="folder for the runs' checkpoints (default runs/ablation)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="subset of runs, e.g. baseline mlore (the single-task references are always kept for Delta_m)",
    )
    p.add_argument("--steps", type=int, default=None, help="override the recipe's training steps")
    p.add_argument("--eval-frames", type=int, default=None, help="held-out synthetic frames to evaluate on")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their latest checkpoint")
    p.add_argument("--force", action="store_true", help="retrain runs even when their final checkpoint exists")
    p.add_argument("--no-latency", action="store_true", help="skip the latency pass (column left empty)")
    p.add_argument("--docs", default=None, help="write the markdown table here (plus .json and images/<stem>.png)")
    p.add_argument("--no-plot", action="store_true", help="with --docs: no bar plot PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines only)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtl_perception.evaluate import ablation as ab
    from mtl_perception.model import CheckpointError, ConfigError

    config = args.config
    if config is None:
        from mtl_perception.paths import package_share_dir

        config = str(package_share_dir() / "config" / "train" / "ablation.yaml")
    command = "mtl-perception " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    if not command.startswith("mtl-perception ablation"):  # called in-process (tests): rebuild from args
        command = f"mtl-perception ablation --config {config} --out {args.out}"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        cfg = ab.load_ablation_config(config, args.steps, args.eval_frames, args.variants)
        results = ab.run_ablation(
            cfg,
            args.out,
            resume=args.resume,
            force=args.force,
            latency=not args.no_latency,
            progress=not args.no_progress and sys.stderr.isatty(),
            log=log,
            command=command,
        )
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    if args.docs:
        written = ab.write_docs(results, args.docs, plot=not args.no_plot)
        log("[ablation] wrote " + ", ".join(str(p) for p in written.values()))
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    else:
        print(ab.render_markdown(results))
    return 0
