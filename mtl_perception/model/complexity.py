"""Parameter and FLOP counts by model part (backbone / decoder / heads).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (maintained with torch;
counts matmul/conv/bmm/attention as 2 FLOPs per multiply-add). Element-wise ops, norms and
interpolation are not counted, the usual convention of such counters. Parameters include
frozen ones (the deploy form stores its folded kernels as frozen parameters).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

PARTS = ("backbone", "decoder", "heads")


def count_params(model: nn.Module) -> dict[str, int]:
    out = {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in PARTS}
    out["total"] = sum(p.numel() for p in model.parameters())
    return out


@torch.no_grad()
def count_flops(model: nn.Module, height: int, width: int, batch: int = 1) -> dict[str, float]:
    """GFLOPs of one forward pass at (batch, 3, height, width), split by part."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.randn(batch, 3, height, width, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    out = {part: _part_flops(counts, f"{root}.{part}") / 1e9 for part in PARTS}
    out["total"] = counter.get_total_flops() / 1e9
    return out


def _part_flops(counts: dict[str, dict], name: str) -> float:
    """FLOPs of a submodule. Containers that are never called themselves (a ModuleDict of
    heads) have no entry; then sum their direct children, which are called."""
    if name in counts:
        return sum(counts[name].values())
    depth = name.count(".") + 1
    return sum(sum(v.values()) for k, v in counts.items() if k.startswith(name + ".") and k.count(".") == depth)
