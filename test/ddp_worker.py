"""Worker for test_train.py: trains a tiny model with ``Trainer`` (run under torchrun or alone).

usage: ddp_worker.py OUT_DIR STEPS [--resume] [--checkpoint-every N]
The data are small procedural images whose labels/depth are functions of the pixels, built
here so the test depends only on the training code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import tiny_config  # noqa: E402

from mtl_perception.train import Trainer, load_train_config  # noqa: E402


class StripesDataset:
    """Vertical bands of 3 classes; depth grows with the row (a ground plane)."""

    def __init__(self, n: int = 16, h: int = 64, w: int = 128) -> None:
        self.n, self.h, self.w = n, h, w

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng(i)
        cols = np.arange(self.w)
        offset = int(rng.integers(0, self.w))
        label = ((cols + offset) // (self.w // 4)) % 3
        semseg = np.repeat(label[None, :], self.h, axis=0).astype(np.uint8)
        palette = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.uint8)
        image = palette[semseg] + rng.integers(0, 20, (self.h, self.w, 3)).astype(np.uint8)
        rows = np.arange(self.h, dtype=np.float32)[:, None]
        depth = np.broadcast_to(2.0 + 30.0 * (1.0 - rows / self.h), (self.h, self.w)).astype(np.float32)
        return {"image": image, "semseg": semseg, "depth": depth.copy(), "K": None, "name": str(i)}


def identity(sample: dict, rng: np.random.Generator) -> dict:
    return sample


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("steps", type=int)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--checkpoint-every", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_train_config(
        {
            "model": tiny_config("mlore"),
            "data": {"train": {"type": "memory"}, "num_workers": 0},
            "steps": args.steps,
            "batch_size": 4,
            "optim": {"lr": 1e-3},
            "schedule": {"type": "cosine", "warmup_steps": 2},
            "checkpoint_every": args.checkpoint_every,
            "keep_checkpoints": 10,
            "log_every": 1,
        }
    )
    trainer = Trainer(cfg, args.out, StripesDataset(), identity, resume=args.resume or None, device="cpu")
    try:
        summary = trainer.train(progress=False)
    finally:
        trainer.close()
    if trainer.dist.is_main:
        print("DONE", summary["step"], summary["world_size"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
