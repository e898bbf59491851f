"""``moe``: the standard Mixture-of-Experts ablation used by the MLoRE and TaskExpert papers.

Same placement as ``mlore`` (per level: shared 1x1 projection, then ``modules_per_level``
modules applied per task in sequence, then per-task pixel-wise fusion), but every expert is
a full-rank non-linear network: 3x3 conv C->C, ReLU, 1x1 conv C->C. Because of the ReLU the
experts cannot be folded into one conv, which is the point of the comparison.

Choices the papers leave open, and ours:
- N = 5 experts, top-k = 3 (60 % of N, the MLoRE rule), per-image gates from one router per
  task (global average pool -> linear -> N logits and N noise std-devs), noisy top-k in
  training (as in MLoRE's router), renormalised over the kept k.
- Each module has a per-task 1x1 input projection and the same BN -> GELU -> 1x1 output block
  as an MLoRE module, so the two differ only in the expert mixture.
- All experts are computed densely and weighted (dropped experts get gate 0): simple,
  traceable, and what FLOP counters report; a sparse dispatch would save at most (N-k)/N of
  the expert cost at batch 1.
- Load balancing: CV^2 of the mean gates per module (the MLoRE loss), weighted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_perception.model.decoders.baseline import LevelProjection
from mtl_perception.model.decoders.mlore import gated_stack_forward, topk_gates
from mtl_perception.model.errors import ConfigError
from mtl_perception.model.layers import LevelFusion
from mtl_perception.model.registry import Decoder, register_decoder


class ExpertRouter(nn.Module):
    """Per-image router: global average pool -> linear -> N logits + N noise std-devs."""

    def __init__(self, channels: int, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.fc = nn.Linear(channels, 2 * num_experts)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.fc(u.mean(dim=(2, 3)))
        return r[:, : self.num_experts], r[:, self.num_experts :]


class MoEModule(nn.Module):
    def __init__(self, channels: int, tasks: list[str], num_experts: int, top_k: int, noisy_gating: bool) -> None:
        super().__init__()
        c = channels
        self.top_k, self.noisy_gating = top_k, noisy_gating
        self.task_proj = nn.ModuleDict({t: nn.Conv2d(c, c, 1) for t in tasks})
        self.router = nn.ModuleDict({t: ExpertRouter(c, num_experts) for t in tasks})
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1))
            for _ in range(num_experts)
        )
        self.post = nn.ModuleDict({t: nn.Sequential(nn.BatchNorm2d(c), nn.GELU(), nn.Conv2d(c, c, 1)) for t in tasks})

    def route(self, u: torch.Tensor, task: str) -> torch.Tensor:
        logits, noise_std = self.router[task](u)
        if self.training and self.noisy_gating:
            logits = logits + torch.randn_like(logits) * noise_std
        return topk_gates(logits, self.top_k, "renorm")

    def forward(self, x: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.task_proj[task](x)
        gates = self.route(u, task)
        y = sum(gates[:, i, None, None, None] * expert(u) for i, expert in enumerate(self.experts))
        return self.post[task](y), gates


@register_decoder("moe")
class MoEDecoder(Decoder):
    DEFAULTS: dict[str, Any] = {
        "num_experts": 5,
        "top_k": 3,
        "noisy_gating": True,
        "modules_per_level": 2,
        "load_balance_weight": 1e-4,
    }

    def __init__(self, cfg, in_dims, tasks, grid):
        super().__init__(cfg, in_dims, tasks, grid)
        c, n, k = self.out_channels, int(cfg["num_experts"]), int(cfg["top_k"])
        if n < 1 or not 1 <= k <= n:
            raise ConfigError(f"decoder.top_k must be in 1..num_experts={n}, got {k}")
        self.load_balance_weight = float(cfg["load_balance_weight"])
        self.proj = LevelProjection(in_dims, c)
        per_level = int(cfg["modules_per_level"])
        self.levels = nn.ModuleList(
            nn.ModuleList(MoEModule(c, tasks, n, k, bool(cfg["noisy_gating"])) for _ in range(per_level))
            for _ in in_dims
        )
        self.fusion = nn.ModuleDict({t: LevelFusion(c, len(in_dims)) for t in tasks})

    def forward(self, feats):
        return gated_stack_forward(self, feats)
