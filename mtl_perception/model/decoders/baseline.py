"""``baseline``: the plain multi-task decoder the MoE variants are compared against.

Per level: a 1x1 projection of the backbone feature to C channels (shared by tasks); per
task and level: one 3x3 ConvBNAct (the task-specific decoder capacity that the MoE variants
replace with their expert modules); per task: pixel-wise softmax fusion over the levels.
Fusion and heads are the same modules the other variants use, so comparisons isolate the
per-level task modules.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_perception.model.layers import ConvBNAct, LevelFusion
from mtl_perception.model.registry import Decoder, register_decoder


class LevelProjection(nn.ModuleList):
    """1x1 conv per level, backbone dim -> C (shared by all tasks)."""

    def __init__(self, in_dims: list[int], channels: int) -> None:
        super().__init__([nn.Conv2d(d, channels, 1) for d in in_dims])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:  # type: ignore[override]
        return [proj(f) for proj, f in zip(self, feats)]


@register_decoder("baseline")
class BaselineDecoder(Decoder):
    DEFAULTS: dict[str, Any] = {"blocks_per_level": 1}

    def __init__(self, cfg, in_dims, tasks, grid):
        super().__init__(cfg, in_dims, tasks, grid)
        c = self.out_channels
        self.proj = LevelProjection(in_dims, c)
        n = int(cfg["blocks_per_level"])
        self.task_blocks = nn.ModuleList(
            nn.ModuleDict({t: nn.Sequential(*[ConvBNAct(c, c, 3) for _ in range(n)]) for t in tasks}) for _ in in_dims
        )
        self.fusion = nn.ModuleDict({t: LevelFusion(c, len(in_dims)) for t in tasks})

    def forward(self, feats):
        levels = self.proj(feats)
        out = {}
        for t in self.tasks:
            per_level = [blocks[t](f) for blocks, f in zip(self.task_blocks, levels)]
            out[t] = self.fusion[t](per_level)
        return out, {}
