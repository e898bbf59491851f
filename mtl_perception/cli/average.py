"""``mtl-perception average``: weighted mean of checkpoints of one model (a model soup)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average",
        help="average the weights of checkpoints of one model (model soup / WiSE-FT)",
        description="Write the weighted mean of checkpoints that share an ancestor (a model and its continuation, "
        "or runs from one start): a 'model soup' (Wortsman et al., ICML 2022), which often generalises better out "
        "of distribution than either end point. The first checkpoint sets the architecture, tensor names and "
        "storage dtype; every one of its tensors must exist with the same shape in the others (tensors only the "
        "others have, e.g. an uncertainty head, are left out and listed). The calibrated temperature is dropped: "
        "run `mtl-perception calibrate` on the result. Example: `mtl-perception average runs/new/model.safetensors "
        "OLD.safetensors --out runs/soup/model.safetensors`.",
    )
    p.add_argument(
        "checkpoints", nargs="+", help="two or more .safetensors checkpoints; the first sets the architecture"
    )
    p.add_argument(
        "--weights", type=float, nargs="+", default=None, help="one per checkpoint, >= 0, sum 1 (default uniform)"
    )
    p.add_argument("--out", required=True, help="where to write the averaged checkpoint")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtl_perception.train.soup import average_checkpoints

    summary = average_checkpoints(args.checkpoints, args.out, args.weights)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        srcs = ", ".join(f"{s['weight']:.3g} x {s['path']}" for s in summary["sources"])
        print(
            f"wrote {summary['out']}: {summary['averaged_tensors']} of {summary['tensors']} tensors averaged ({srcs})"
        )
        for path, names in summary["left_out"].items():
            print(f"  left out {len(names)} tensor(s) only {path} has (e.g. {names[0]})")
        if summary["dropped_metadata"]:
            print(f"  dropped {', '.join(summary['dropped_metadata'])}: run `mtl-perception calibrate` on the result")
    return 0
