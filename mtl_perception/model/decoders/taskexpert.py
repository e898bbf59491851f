"""``taskexpert``: TaskExpert-style decoder (UNOFFICIAL re-creation).

TaskExpert (Ye & Xu, ICCV 2023) never released code. What the paper's abstract and Figure 2
caption establish, and this module implements: expert networks decompose a backbone feature
into several task-generic features; per-task *dynamic* gating networks decode task-specific
features as sample-dependent combinations of them; "Memorial MoE" modules sit at several
backbone layers; a multi-task feature memory is read as an additional expert in each module
and updated after each layer; after the last layer the memory feeds each task's prediction.
Everything else is OUR choice (papers.md §2):

- One Memorial-MoE module per backbone tap (4 levels), on the level feature projected to C.
- N = 4 experts per level, each 1x1 conv C->C + BN + GELU, then a 3x3 depthwise conv + BN
  (cheap spatial context). Experts are shared by all tasks.
- Gating: per task and per PIXEL ("spatial" gating): 1x1 ConvBNAct C->C/4 then a 3x3 conv to
  N+1 logits, softmax over the N experts + the memory expert. Per-pixel gates cannot be
  folded into one conv; the deploy form only fuses BatchNorms.
- Memory: one multi-task tensor M (B, C, h, w). Initialised from the first level by a 1x1
  ConvBNAct. Read per task by a 1x1 conv (the extra expert). Written after every level by a
  GRU-style gated update: w = ConvBNAct(concat of all tasks' decoded features -> C),
  z = sigmoid(1x1 conv([M, w])), M <- (1 - z) * M + z * w.
- After the last level each task's fused feature gets a final read of the memory added
  (a 1x1 conv per task).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_perception.model.decoders.baseline import LevelProjection
from mtl_perception.model.errors import ConfigError
from mtl_perception.model.layers import ConvBNAct, LevelFusion
from mtl_perception.model.registry import Decoder, register_decoder


class Expert(nn.Sequential):
    def __init__(self, channels: int) -> None:
        super().__init__(ConvBNAct(channels, channels, 1), ConvBNAct(channels, channels, 3, act=False, groups=channels))


class SpatialGate(nn.Sequential):
    """Per-pixel softmax over N experts + the memory expert."""

    def __init__(self, channels: int, num_inputs: int) -> None:
        hidden = max(8, channels // 4)
        super().__init__(ConvBNAct(channels, hidden, 1), nn.Conv2d(hidden, num_inputs, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.softmax(super().forward(x), dim=1)


class MemorialMoE(nn.Module):
    def __init__(self, channels: int, tasks: list[str], num_experts: int) -> None:
        super().__init__()
        c = channels
        self.experts = nn.ModuleList(Expert(c) for _ in range(num_experts))
        self.gates = nn.ModuleDict({t: SpatialGate(c, num_experts + 1) for t in tasks})
        self.read = nn.ModuleDict({t: nn.Conv2d(c, c, 1) for t in tasks})
        self.write = ConvBNAct(c * len(tasks), c, 1)
        self.update_gate = nn.Conv2d(2 * c, c, 1)

    def forward(self, f: torch.Tensor, memory: torch.Tensor, tasks: list[str]):
        expert_feats = torch.stack([e(f) for e in self.experts], dim=1)  # B, N, C, h, w
        out, gates = {}, {}
        for t in tasks:
            g = self.gates[t](f)  # B, N+1, h, w
            candidates = torch.cat([expert_feats, self.read[t](memory).unsqueeze(1)], dim=1)
            out[t] = (candidates * g.unsqueeze(2)).sum(dim=1)
            gates[t] = g
        written = self.write(torch.cat([out[t] for t in tasks], dim=1))
        z = torch.sigmoid(self.update_gate(torch.cat([memory, written], dim=1)))
        memory = (1 - z) * memory + z * written
        return out, memory, gates


@register_decoder("taskexpert")
class TaskExpertDecoder(Decoder):
    OFFICIAL = False
    DEFAULTS: dict[str, Any] = {"num_experts": 4}

    def __init__(self, cfg, in_dims, tasks, grid):
        super().__init__(cfg, in_dims, tasks, grid)
        c, n = self.out_channels, int(cfg["num_experts"])
        if n < 1:
            raise ConfigError(f"decoder.num_experts must be >= 1, got {n}")
        self.proj = LevelProjection(in_dims, c)
        self.memory_init = ConvBNAct(c, c, 1)
        self.levels = nn.ModuleList(MemorialMoE(c, tasks, n) for _ in in_dims)
        self.fusion = nn.ModuleDict({t: LevelFusion(c, len(in_dims)) for t in tasks})
        self.final_read = nn.ModuleDict({t: nn.Conv2d(c, c, 1) for t in tasks})
        self.last_gates: list[dict[str, torch.Tensor]] = []
        self.last_memories: list[torch.Tensor] = []

    def forward(self, feats):
        levels = self.proj(feats)
        memory = self.memory_init(levels[0])
        per_task: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}
        self.last_gates, self.last_memories = [], [memory.detach()]
        for module, f in zip(self.levels, levels):
            out, memory, gates = module(f, memory, self.tasks)
            for t in self.tasks:
                per_task[t].append(out[t])
            if not torch.jit.is_tracing():  # kept (detached) for inspection/tests, not in exported graphs
                self.last_gates.append({t: g.detach() for t, g in gates.items()})
                self.last_memories.append(memory.detach())
        out = {t: self.fusion[t](per_task[t]) + self.final_read[t](memory) for t in self.tasks}
        return out, {}
