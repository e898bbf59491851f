"""``mtl-perception train``: train a model from a ``config/train/*.yaml`` recipe.

Single process: ``mtl-perception train --config config/train/mlore_lite0.yaml --out runs/x``.
Multi-GPU / multi-node: ``torchrun --nproc_per_node 8 -m mtl_perception.cli train ...``
(DDP; NCCL on GPUs, gloo on CPUs; ``sync_bn: true`` for SyncBatchNorm).
"""

from __future__ import annotations

import argparse
import json

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a multi-task model (single process or torchrun DDP)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="train recipe YAML (config/train/*.yaml)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, train_log.csv, model.safetensors")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        help="resume from the latest checkpoint in --out, or from the given checkpoint file",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set steps=100 --set optim.lr=1e-4 (repeatable)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtl_perception.model import CheckpointError, ConfigError
    from mtl_perception.train import Trainer, load_train_config
    from mtl_perception.train.data import build_train_data

    try:
        cfg = load_train_config(args.config, args.set)
        dataset, transform = build_train_data(cfg)
        trainer = Trainer(cfg, args.out, dataset, transform, resume=args.resume, device=args.device)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    try:
        summary = trainer.train(progress=not args.no_progress)
    finally:
        trainer.close()
    if args.json and trainer.dist.is_main:
        print(json.dumps(summary, indent=2))
    return 0
