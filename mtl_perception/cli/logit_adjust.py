"""``mtl-perception logit-adjust``: the unweighted decision rule for a class-balanced model."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "logit-adjust",
        help="fold a class-balanced model's log class weights out of its semantic bias (post-hoc logit adjustment)",
        description="A semantic loss weighted by w_c (train recipe `class_balance`) shifts each class's logit by "
        "log w_c, so the model over-predicts the up-weighted rare classes. This writes the checkpoint with "
        "tau x log w_c subtracted from the classifier's bias (tau 1: the exact correction; Menon et al., ICLR 2021): "
        "the plain decision rule on the features the weighted loss trained, at no inference cost. The weights "
        "come from the checkpoint's class_balance metadata or --class-weights-from (the runs' config.json; "
        "several: the mean of their log-weights, right for a uniform soup of those runs). The calibrated "
        "temperature is dropped: run `mtl-perception calibrate` on the result. Example: `mtl-perception "
        "logit-adjust runs/soup/model.safetensors --class-weights-from runs/a runs/b --out runs/soup_la.safetensors`.",
    )
    p.add_argument("checkpoint", help="a .safetensors checkpoint trained with class_balance (or a soup of such runs)")
    p.add_argument("--out", required=True, help="where to write the adjusted checkpoint")
    p.add_argument(
        "--tau",
        type=float,
        default=1.0,
        help="fraction of log w_c to subtract, > 0 (default 1: the exact correction of the weighted loss)",
    )
    p.add_argument(
        "--class-weights-from",
        nargs="+",
        default=None,
        metavar="RUN",
        help="run folders, their config.json or checkpoints with class_balance metadata (default: the checkpoint)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    from mtl_perception.cli import CLIError
    from mtl_perception.train.logit_adjust import adjust_checkpoint

    if not math.isfinite(args.tau) or not args.tau > 0:
        raise CLIError(f"--tau must be a number > 0 (1 = the exact correction), got {args.tau}")
    summary = adjust_checkpoint(args.checkpoint, args.out, args.tau, args.class_weights_from)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for task, shift in summary["subtracted"].items():
            lo, hi = min(shift), max(shift)
            tau = summary["tau"]
            print(f"wrote {summary['out']}: {task} bias minus tau x log w (tau {tau:g}; {lo:+.3f} .. {hi:+.3f})")
        if summary["dropped_metadata"]:
            print(f"  dropped {', '.join(summary['dropped_metadata'])}: run `mtl-perception calibrate` on the result")
    return 0
