"""``mlore``: Mixture of Low-Rank Experts (Yang et al., CVPR 2024), faithful to the official code.

One MLoRE module, for task t and input x (C channels):

    u = conv1x1_t(x)                                      # per-task projection
    logits, noise_std, mix = router_t(u)                  # per-IMAGE gates (not per pixel)
    g = top-k(logits [+ noise in training])               # k of N experts kept
    y = BN_t( sum_i g_i * up_i(down_i(u)) )               # task-shared low-rank experts
        + mix * specific_t(u)                             # task-specific low-rank expert
        + generic(u.detach())                             # task-shared 3x3 conv, stop-gradient
    out = conv1x1_t( GELU( BN'_t(y) ) )

Expert i is a 3x3 conv C->r_i then a 1x1 conv r_i->C (both with bias), so every path before
the GELU is linear in u and the sum folds into ONE dense 3x3 conv per task and image
(``deploy_``). Two modules per level, 4 levels, pixel-wise softmax fusion, conv heads.

Choices the paper / code leave open, and ours:
- Ranks: ``rank_range`` spread evenly over N experts (8..64 for C=192 gives the official
  ViT-S list 8, 12, ..., 64) unless ``ranks`` lists them.
- ``top_k`` defaults to round(0.6 N) (9 of 15, as in every released config).
- ``gate_norm``: ``renorm`` = softmax over the kept k (official ``pre_softmax: True``, NYUD);
  ``softmax`` = softmax over all N, then drop (``pre_softmax: False``, PASCAL; gates sum < 1).
  Both are computed without Python loops: a top-k mask is scattered and, for ``renorm``,
  the kept probabilities are re-normalised (identical to the masked softmax).
- Noisy top-k: ``noise = randn * noise_std`` with the router's raw output as std (no softplus),
  training only, as in the official code.
- Router: a global branch (1x1 conv, LayerNorm, GELU, 1x1 conv, global average pool) and a
  position-aware branch (a learned weight per spatial position, i.e. the official
  ``Linear(H*W, 1)``, then LayerNorm, GELU, linear), concatenated, then a linear layer to
  2N+1 outputs (gate logits, noise std, mix scalar). The position weights are defined on the
  model's configured grid (``input_size`` / 16). For another input size they are resized
  bilinearly and rescaled by (h0*w0)/(h*w) so the total weight mass is unchanged: exact at the
  configured size, a documented approximation elsewhere. Deployment resizes frames to the
  configured size, so the exact path is what runs.
- Load balancing: for each module, the post-top-k gates of all tasks and images are averaged
  to an N-vector and its squared coefficient of variation (unbiased std) is added; the sum
  over modules is multiplied by ``load_balance_weight``.
- The unused ``route_feat`` output and the ViT-B copy's unused modules are not reproduced.

Deploy form: the dense kernels K_i = up_i o down_i are precomputed (N x C x C x 3 x 3, shared
by tasks); per image the router runs, then K = s_t * sum_i g_i K_i + mix * K_spec,t + K_gen and
the matching bias (s_t, BN_t folded) are formed with one matmul, and one grouped conv
(groups = batch) applies every image's own kernel: batched, no Python loop over samples,
exportable to ONNX. ``folded_conv: unfold`` uses im2col + batched matmul instead, which keeps
the batch dimension dynamic in ONNX (a grouped conv's group count is static).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.model.decoders.baseline import LevelProjection
from mtl_perception.model.errors import ConfigError
from mtl_perception.model.layers import LayerNorm2d, LevelFusion
from mtl_perception.model.registry import Decoder, register_decoder

GATE_NORMS = ("renorm", "softmax")


def spread_ranks(n: int, lo: int, hi: int) -> list[int]:
    """N ranks spread evenly from lo to hi (inclusive)."""
    if n == 1:
        return [hi]
    return [int(round(lo + (hi - lo) * i / (n - 1))) for i in range(n)]


def topk_gates(logits: torch.Tensor, k: int, norm: str) -> torch.Tensor:
    """Per-row top-k gating without Python loops (traceable, ONNX-exportable).

    ``renorm``: softmax restricted to the k largest logits (sums to 1).
    ``softmax``: softmax over all N, entries outside the top k set to 0 (sums to < 1).
    """
    probs = torch.softmax(logits, dim=-1)
    keep = torch.zeros_like(probs).scatter(-1, logits.topk(k, dim=-1).indices, 1.0)
    gates = probs * keep
    if norm == "renorm":
        gates = gates / gates.sum(dim=-1, keepdim=True)
    return gates


def cv_squared(gates: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Squared coefficient of variation of the mean gate per expert (load-balancing loss)."""
    mean_per_expert = gates.float().mean(dim=0)
    if mean_per_expert.numel() < 2:
        return mean_per_expert.sum() * 0.0
    return mean_per_expert.var() / (mean_per_expert.mean().square() + eps)


def gated_stack_forward(decoder: Decoder, feats: list[torch.Tensor]):
    """Forward shared by decoders made of per-level stacks of gated modules (``mlore``, ``moe``).

    Per level: the shared projection, then the level's modules in sequence for each task; per
    task: fusion over levels. Each module returns (features, gates); in training the gates of
    every (level, module) over all tasks and images feed the CV^2 load-balancing loss.
    """
    levels = decoder.proj(feats)
    per_task: dict[str, list[torch.Tensor]] = {t: [] for t in decoder.tasks}
    balance: dict[tuple[int, int], list[torch.Tensor]] = {}  # (level, module) -> gates
    for li, (stack, f) in enumerate(zip(decoder.levels, levels)):
        for t in decoder.tasks:
            y = f
            for mi, module in enumerate(stack):
                y, gates = module(y, t)
                balance.setdefault((li, mi), []).append(gates)
            per_task[t].append(y)
    out = {t: decoder.fusion[t](per_task[t]) for t in decoder.tasks}
    aux = {}
    if decoder.training and decoder.load_balance_weight > 0:
        loss = sum(cv_squared(torch.cat(g, dim=0)) for g in balance.values())
        aux["load_balance"] = decoder.load_balance_weight * loss
    return out, aux


class MLoReRouter(nn.Module):
    """Global-pooling branch + position-aware branch -> 2N+1 router outputs per image."""

    def __init__(self, channels: int, num_experts: int, grid: tuple[int, int]) -> None:
        super().__init__()
        hidden = channels // 4
        self.num_experts = num_experts
        self.grid = tuple(grid)
        self.global_branch = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            LayerNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 1),
        )
        n_pos = grid[0] * grid[1]
        bound = 1.0 / math.sqrt(n_pos)  # nn.Linear(H*W, 1) default init
        self.pos_weight = nn.Parameter(torch.empty(n_pos).uniform_(-bound, bound))
        self.pos_bias = nn.Parameter(torch.empty(1).uniform_(-bound, bound))
        self.pos_branch = nn.Sequential(nn.LayerNorm(channels), nn.GELU(), nn.Linear(channels, hidden))
        self.out = nn.Linear(2 * hidden, 2 * num_experts + 1)

    def position_weights(self, h: int, w: int) -> torch.Tensor:
        if (h, w) == self.grid:
            return self.pos_weight
        wmap = self.pos_weight.view(1, 1, *self.grid)
        wmap = F.interpolate(wmap, size=(h, w), mode="bilinear", align_corners=False)
        return wmap.flatten() * (self.grid[0] * self.grid[1] / (h * w))

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = u.shape[-2:]
        a = self.global_branch(u).mean(dim=(2, 3))
        b = u.flatten(2) @ self.position_weights(h, w) + self.pos_bias
        b = self.pos_branch(b)
        r = self.out(torch.cat([a, b], dim=1))
        n = self.num_experts
        return r[:, :n], r[:, n : 2 * n], r[:, 2 * n :]


class MLoReModule(nn.Module):
    """One MLoRE module (the official ``MOEBlock``) serving every task."""

    def __init__(
        self,
        channels: int,
        tasks: list[str],
        ranks: list[int],
        top_k: int,
        specific_rank: int,
        gate_norm: str,
        noisy_gating: bool,
        grid: tuple[int, int],
        folded_conv: str = "grouped",
    ) -> None:
        super().__init__()
        c = channels
        self.channels = c
        self.ranks = list(ranks)
        self.top_k = top_k
        self.gate_norm = gate_norm
        self.noisy_gating = noisy_gating
        self.folded_conv = folded_conv
        self.folded = False
        n = len(ranks)
        self.task_proj = nn.ModuleDict({t: nn.Conv2d(c, c, 1) for t in tasks})
        self.router = nn.ModuleDict({t: MLoReRouter(c, n, grid) for t in tasks})
        # All experts' 3x3 "down" convs stacked in one conv (C -> sum r_i); their 1x1 "up"
        # convs as one (C x sum r_i) matrix plus one bias per expert. Same maths as N
        # separate experts, one kernel launch instead of 2N.
        total = sum(ranks)
        self.expert_down = nn.Conv2d(c, total, 3, padding=1)
        self.expert_up = nn.Parameter(torch.empty(c, total))
        self.expert_up_bias = nn.Parameter(torch.zeros(n, c))
        offsets = [0, *torch.tensor(ranks).cumsum(0).tolist()]
        self.slices = [slice(offsets[i], offsets[i + 1]) for i in range(n)]
        for sl, r in zip(self.slices, ranks):
            # kaiming_uniform(a=sqrt(5)) per expert (fan_in = r_i), biases zero: official init.
            bound = 1.0 / math.sqrt(r)
            nn.init.uniform_(self.expert_up.data[:, sl], -bound, bound)
        nn.init.zeros_(self.expert_down.bias)
        self.register_buffer(
            "rank_to_expert",
            torch.cat([torch.full((r,), i, dtype=torch.long) for i, r in enumerate(ranks)]),
            persistent=False,
        )
        self.shared_bn = nn.ModuleDict({t: nn.BatchNorm2d(c) for t in tasks})
        self.specific = nn.ModuleDict(
            {t: nn.Sequential(nn.Conv2d(c, specific_rank, 3, padding=1), nn.Conv2d(specific_rank, c, 1)) for t in tasks}
        )
        self.generic = nn.Conv2d(c, c, 3, padding=1)
        self.post = nn.ModuleDict({t: nn.Sequential(nn.BatchNorm2d(c), nn.GELU(), nn.Conv2d(c, c, 1)) for t in tasks})

    def route(self, u: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits, noise_std, mix = self.router[task](u)
        if self.training and self.noisy_gating:
            logits = logits + torch.randn_like(logits) * noise_std
        return topk_gates(logits, self.top_k, self.gate_norm), mix

    def forward(self, x: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.task_proj[task](x)
        gates, mix = self.route(u, task)
        if self.folded:
            y = self._folded_forward(u, gates, mix, task)
        else:
            h = self.expert_down(u) * gates[:, self.rank_to_expert, None, None]
            shared = F.conv2d(h, self.expert_up[:, :, None, None]) + (gates @ self.expert_up_bias)[:, :, None, None]
            y = (
                self.shared_bn[task](shared)
                + mix[:, :, None, None] * self.specific[task](u)
                + self.generic(u.detach())  # stop-gradient: weights learn, input gets no grad
            )
        return self.post[task](y), gates

    # ---------------------------------------------------------------- deploy form
    @staticmethod
    def _compose(up: torch.Tensor, up_bias: torch.Tensor, down: nn.Conv2d | torch.Tensor, down_bias: torch.Tensor):
        """Dense kernel and bias of ``up(down(x))`` with up a 1x1 conv (exact, zero padding)."""
        w = down.weight if isinstance(down, nn.Conv2d) else down
        kernel = torch.einsum("or,rcab->ocab", up, w)
        return kernel, up_bias + up @ down_bias

    @torch.no_grad()
    def fold_(self) -> None:
        """Replace the expert paths by precomputed dense kernels (eval-mode equivalent)."""
        if self.folded:
            return
        c, n = self.channels, len(self.ranks)
        w, bw = self.expert_down.weight, self.expert_down.bias
        bank, bias_bank = [], []
        for i, sl in enumerate(self.slices):
            k_i, b_i = self._compose(self.expert_up[:, sl], self.expert_up_bias[i], w[sl], bw[sl])
            bank.append(k_i.reshape(-1))
            bias_bank.append(b_i)
        frozen = lambda t: nn.Parameter(t.detach().clone(), requires_grad=False)  # noqa: E731
        self.kernel_bank = frozen(torch.stack(bank))  # N x (C*C*9), shared by tasks
        self.bias_bank = frozen(torch.stack(bias_bank))  # N x C
        self.generic_kernel = frozen(self.generic.weight)
        self.generic_bias = frozen(self.generic.bias)
        self.bn_scale, self.bn_shift = nn.ParameterDict(), nn.ParameterDict()
        self.specific_kernel, self.specific_bias = nn.ParameterDict(), nn.ParameterDict()
        for t, bn in self.shared_bn.items():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            self.bn_scale[t] = frozen(scale)
            self.bn_shift[t] = frozen(bn.bias - bn.running_mean * scale)
            down, up = self.specific[t]
            k_s, b_s = self._compose(up.weight[:, :, 0, 0], up.bias, down, down.bias)
            self.specific_kernel[t] = frozen(k_s)
            self.specific_bias[t] = frozen(b_s)
        del self.expert_down, self.expert_up, self.expert_up_bias, self.shared_bn, self.specific, self.generic
        assert self.kernel_bank.shape == (n, c * c * 9)
        self.folded = True

    def _folded_forward(self, u: torch.Tensor, gates: torch.Tensor, mix: torch.Tensor, task: str) -> torch.Tensor:
        b, c, h, w = u.shape
        scale = self.bn_scale[task]
        kernel = (gates @ self.kernel_bank).view(b, c, c, 3, 3) * scale.view(1, c, 1, 1, 1)
        kernel = kernel + mix.view(b, 1, 1, 1, 1) * self.specific_kernel[task] + self.generic_kernel
        bias = (
            (gates @ self.bias_bank) * scale + self.bn_shift[task] + mix * self.specific_bias[task] + self.generic_bias
        )
        if self.folded_conv == "unfold":
            cols = F.unfold(u, 3, padding=1)  # B x 9C x HW
            y = torch.bmm(kernel.view(b, c, c * 9), cols) + bias.unsqueeze(-1)
            return y.view(b, c, h, w)
        y = F.conv2d(
            u.reshape(1, b * c, h, w), kernel.reshape(b * c, c, 3, 3), bias.reshape(b * c), padding=1, groups=b
        )
        return y.view(b, c, h, w)


@register_decoder("mlore")
class MLoReDecoder(Decoder):
    DEFAULTS: dict[str, Any] = {
        "num_experts": 15,
        "rank_range": [8, 64],
        "ranks": None,
        "top_k": None,
        "specific_rank": 32,
        "gate_norm": "renorm",
        "noisy_gating": True,
        "modules_per_level": 2,
        "load_balance_weight": 1e-4,
        "folded_conv": "grouped",
    }

    def __init__(self, cfg, in_dims, tasks, grid):
        super().__init__(cfg, in_dims, tasks, grid)
        c = self.out_channels
        n = int(cfg["num_experts"])
        ranks = cfg["ranks"] or spread_ranks(n, *cfg["rank_range"])
        if len(ranks) != n or any(int(r) < 1 for r in ranks):
            raise ConfigError(f"decoder.ranks must list {n} positive ranks (num_experts), got {ranks}")
        top_k = cfg["top_k"] if cfg["top_k"] is not None else max(1, round(0.6 * n))
        if not 1 <= top_k <= n:
            raise ConfigError(f"decoder.top_k must be in 1..num_experts={n}, got {top_k}")
        if cfg["gate_norm"] not in GATE_NORMS:
            raise ConfigError(f"decoder.gate_norm must be one of {GATE_NORMS}, got {cfg['gate_norm']!r}")
        if cfg["folded_conv"] not in ("grouped", "unfold"):
            raise ConfigError(f"decoder.folded_conv must be 'grouped' or 'unfold', got {cfg['folded_conv']!r}")
        self.ranks, self.top_k = [int(r) for r in ranks], int(top_k)
        self.load_balance_weight = float(cfg["load_balance_weight"])
        self.proj = LevelProjection(in_dims, c)
        self.levels = nn.ModuleList(
            nn.ModuleList(
                MLoReModule(
                    c,
                    tasks,
                    self.ranks,
                    self.top_k,
                    int(cfg["specific_rank"]),
                    cfg["gate_norm"],
                    bool(cfg["noisy_gating"]),
                    grid,
                    cfg["folded_conv"],
                )
                for _ in range(int(cfg["modules_per_level"]))
            )
            for _ in in_dims
        )
        self.fusion = nn.ModuleDict({t: LevelFusion(c, len(in_dims)) for t in tasks})

    def deploy_(self) -> None:
        for stack in self.levels:
            for module in stack:
                module.fold_()

    def forward(self, feats):
        return gated_stack_forward(self, feats)
