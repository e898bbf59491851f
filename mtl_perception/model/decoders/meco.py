"""``meco``: MECO-style Mixture of Expert Codebooks (UNOFFICIAL re-creation).

MECO (Hwang & Lee, Sensors 2025) replaces expert modules by lightweight vector-quantised
codebooks: task-generic and task-specific codebooks disentangle shared features into a
discrete latent space, trained end to end with the task losses plus VQ losses. No code or
implementation details are public (see shared/reference/papers.md §3), so every choice below
is OURS, not the paper's:

- Codebook expert: 1x1 conv C->d (encoder), nearest-code vector quantisation in d dims
  (K codes), 1x1 conv d->C (decoder). Defaults d = 64, K = 128.
- Per level: one task-generic codebook expert (shared by all tasks) and one task-specific
  codebook expert per task. Per task, a per-image gate (global average pool -> linear ->
  softmax over the 2 experts) mixes them, and the mixture is added residually to the level
  feature, followed by a cheap per-task 1x1 ConvBNAct. No 3x3 C->C conv anywhere, which is
  where the parameter and FLOP savings against ``baseline`` come from.
- VQ: nearest code by L2 (||z||^2 - 2 z.e + ||e||^2), straight-through estimator
  z + sg(q - z). ``codebook_update: loss`` trains the codebook with ||sg(z) - q||^2 plus the
  commitment loss beta * ||z - sg(q)||^2 (van den Oord et al. 2017, beta = 0.25);
  ``codebook_update: ema`` updates codes as exponential moving averages of their assigned
  encoder outputs (decay 0.99, Laplace smoothing) and keeps only the commitment loss.
- Dead codes: a code unused for ``dead_code_steps`` training steps is re-initialised from a
  random current encoder output. Under DDP the replacement rows are broadcast from rank 0
  so every replica keeps the same codebook.
- Code usage (perplexity and fraction of codes used) is accumulated in training and exposed
  by ``MecoDecoder.codebook_stats()``; ``reset_codebook_stats()`` zeroes the counters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mtl_perception.model.decoders.baseline import LevelProjection
from mtl_perception.model.errors import ConfigError
from mtl_perception.model.layers import ConvBNAct, LevelFusion
from mtl_perception.model.registry import Decoder, register_decoder


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser with straight-through gradients, loss or EMA codebook updates."""

    def __init__(
        self,
        num_codes: int,
        dim: int,
        beta: float = 0.25,
        update: str = "loss",
        decay: float = 0.99,
        dead_code_steps: int = 200,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if update not in ("loss", "ema"):
            raise ConfigError(f"decoder.codebook_update must be 'loss' or 'ema', got {update!r}")
        self.num_codes, self.dim, self.beta, self.update = num_codes, dim, beta, update
        self.decay, self.eps, self.dead_code_steps = decay, eps, dead_code_steps
        init = torch.randn(num_codes, dim) / math.sqrt(dim)
        self.codebook = nn.Parameter(init, requires_grad=update == "loss")
        if update == "ema":
            self.register_buffer("ema_count", torch.ones(num_codes))
            self.register_buffer("ema_sum", init.clone())
        self.register_buffer("steps_unused", torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer("usage", torch.zeros(num_codes))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        e = self.codebook
        dist2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)
        return dist2.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z: (B, d, H, W) -> (straight-through quantised z, VQ loss, code indices (B, H, W))."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        idx = self.nearest(flat)
        q = F.embedding(idx, self.codebook)
        loss = flat.new_zeros(())
        if self.training:
            commitment = F.mse_loss(flat, q.detach())
            if self.update == "loss":
                loss = F.mse_loss(q, flat.detach()) + self.beta * commitment
            else:
                loss = self.beta * commitment
                self._ema_update(flat.detach(), idx)
            self._track_usage_and_revive(flat.detach(), idx)
        q_st = flat + (q - flat).detach()  # straight-through: forward q, backward identity
        return q_st.view(b, h, w, d).permute(0, 3, 1, 2), loss, idx.view(b, h, w)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.num_codes).type_as(flat)
        count, total = onehot.sum(0), onehot.t() @ flat
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            dist.all_reduce(total)
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(total, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace
        self.codebook.data.copy_(self.ema_sum / smoothed.unsqueeze(1))

    @torch.no_grad()
    def _track_usage_and_revive(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.num_codes).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        self.usage.add_(counts)
        unused = self.steps_unused + 1
        self.steps_unused.copy_(torch.where(counts > 0, torch.zeros_like(unused), unused))
        dead = (self.steps_unused >= self.dead_code_steps).nonzero().flatten()
        if dead.numel() == 0:
            return
        pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
        fresh = flat[pick].clone()
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, src=0)
        self.codebook.data[dead] = fresh
        if self.update == "ema":
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
        self.steps_unused[dead] = 0

    def stats(self) -> dict[str, float]:
        total = float(self.usage.sum())
        if total == 0:
            return {"perplexity": 0.0, "used_fraction": 0.0, "num_codes": self.num_codes}
        p = self.usage / total
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {
            "perplexity": float(entropy.exp()),
            "used_fraction": float((self.usage > 0).float().mean()),
            "num_codes": self.num_codes,
        }


class CodebookExpert(nn.Module):
    """1x1 conv C->d, vector quantisation, 1x1 conv d->C."""

    def __init__(self, channels: int, dim: int, num_codes: int, **vq: Any) -> None:
        super().__init__()
        self.encode = nn.Conv2d(channels, dim, 1)
        self.vq = VectorQuantizer(num_codes, dim, **vq)
        self.decode = nn.Conv2d(dim, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, loss, _ = self.vq(self.encode(x))
        return self.decode(q), loss


@register_decoder("meco")
class MecoDecoder(Decoder):
    OFFICIAL = False
    DEFAULTS: dict[str, Any] = {
        "code_dim": 64,
        "num_codes": 128,
        "beta": 0.25,
        "codebook_update": "ema",
        "ema_decay": 0.99,
        "dead_code_steps": 200,
        "vq_weight": 1.0,
    }

    def __init__(self, cfg, in_dims, tasks, grid):
        super().__init__(cfg, in_dims, tasks, grid)
        c, d, k = self.out_channels, int(cfg["code_dim"]), int(cfg["num_codes"])
        if d < 1 or k < 2:
            raise ConfigError(f"decoder.code_dim must be >= 1 and num_codes >= 2, got {d} and {k}")
        vq = {
            "beta": float(cfg["beta"]),
            "update": cfg["codebook_update"],
            "decay": float(cfg["ema_decay"]),
            "dead_code_steps": int(cfg["dead_code_steps"]),
        }
        self.vq_weight = float(cfg["vq_weight"])
        self.proj = LevelProjection(in_dims, c)
        self.generic = nn.ModuleList(CodebookExpert(c, d, k, **vq) for _ in in_dims)
        self.specific = nn.ModuleList(nn.ModuleDict({t: CodebookExpert(c, d, k, **vq) for t in tasks}) for _ in in_dims)
        self.gate = nn.ModuleList(nn.ModuleDict({t: nn.Linear(c, 2) for t in tasks}) for _ in in_dims)
        self.refine = nn.ModuleList(nn.ModuleDict({t: ConvBNAct(c, c, 1) for t in tasks}) for _ in in_dims)
        self.fusion = nn.ModuleDict({t: LevelFusion(c, len(in_dims)) for t in tasks})

    def forward(self, feats):
        levels = self.proj(feats)
        per_task: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}
        vq_loss = levels[0].new_zeros(())
        for li, f in enumerate(levels):
            shared, loss = self.generic[li](f)
            vq_loss = vq_loss + loss
            pooled = f.mean(dim=(2, 3))
            for t in self.tasks:
                own, loss = self.specific[li][t](f)
                vq_loss = vq_loss + loss
                w = torch.softmax(self.gate[li][t](pooled), dim=1)[:, :, None, None]
                mixed = f + w[:, 0:1] * shared + w[:, 1:2] * own
                per_task[t].append(self.refine[li][t](mixed))
        out = {t: self.fusion[t](per_task[t]) for t in self.tasks}
        aux = {"vq": self.vq_weight * vq_loss} if self.training and self.vq_weight > 0 else {}
        return out, aux

    def reset_codebook_stats(self) -> None:
        """Zero the usage counters (e.g. at the start of each logging window)."""
        for m in self.modules():
            if isinstance(m, VectorQuantizer):
                m.usage.zero_()

    def codebook_stats(self) -> dict[str, dict[str, float]]:
        """Per codebook: perplexity of the code usage accumulated in training since
        construction or ``reset_codebook_stats`` (1 = one code used, K = uniform use),
        fraction of codes used, K."""
        stats = {}
        for li in range(len(self.generic)):
            stats[f"level{li}.generic"] = self.generic[li].vq.stats()
            for t, expert in self.specific[li].items():
                stats[f"level{li}.{t}"] = expert.vq.stats()
        return stats
