"""Multi-scale gradient matching on log depth: a shape term beside the per-pixel depth loss.

The per-pixel log-L1 loss weighs every pixel alone; it does not ask that neighbouring pixels keep the
target's depth *relations* (a facade's slope, a car's edge against what lies behind it). Li and
Snavely (MegaDepth, CVPR 2018) and Ranftl et al. (MiDaS, TPAMI 2020) add the gradient of the log-depth
residual R = log(pred) - log(target): it is zero wherever the prediction has the target's shape up to
one scale, whatever that scale is, so it trains shape without fighting the metric term. In a recipe:

    depth_gradient_loss: {weight: 0.5, scales: 4}

    loss += weight * mean over scales s of  sum |grad_x R_s| + |grad_y R_s|  /  number of valid pairs

R_s is R on every 2^s-th pixel; a difference counts only where both pixels have a valid target (sky
and padding are 0 and drop out). It applies to the depth task in the canonical camera (the same
target the per-pixel loss sees); nothing of it is saved in checkpoints or exported.
"""

from __future__ import annotations

from typing import Any

import torch

from mtl_perception.model.errors import ConfigError
from mtl_perception.train.recipe_section import positive_number, recipe_section

DEFAULTS: dict[str, Any] = {"weight": 0.5, "scales": 4}


def validate_depth_gradient_loss(spec: Any) -> dict[str, Any] | None:
    """The ``depth_gradient_loss`` section of a train recipe with defaults filled in, or None when off."""
    out = recipe_section("depth_gradient_loss", spec, DEFAULTS, "{weight: 0.5, scales: 4}")
    if out is None:
        return None
    weight = positive_number("depth_gradient_loss.weight", out["weight"])
    scales = out["scales"]
    if isinstance(scales, bool) or not isinstance(scales, int) or not 1 <= scales <= 6:
        raise ConfigError(f"depth_gradient_loss.scales must be an integer in 1..6, got {scales!r}")
    return {"weight": weight, "scales": scales}


def log_depth_gradient_loss(pred: torch.Tensor, target: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """Mean over ``scales`` of the L1 norm of the log-depth residual's gradient, over valid neighbour pairs.

    ``pred`` and ``target`` are (B, 1, H, W) depths; target pixels that are not finite and > 0 are
    invalid. Zero when ``pred`` equals ``target`` times any positive constant on the valid pixels."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape")
    valid = torch.isfinite(target) & (target > 0)
    safe_target = torch.where(valid, target, torch.ones_like(target))
    residual = torch.where(valid, torch.log(pred.clamp_min(1e-6)) - torch.log(safe_target), torch.zeros_like(pred))
    total = pred.sum() * 0.0
    used = 0
    for s in range(scales):
        step = 2**s
        r, v = residual[..., ::step, ::step], valid[..., ::step, ::step]
        if r.shape[-1] < 2 or r.shape[-2] < 2:
            break
        mx = v[..., :, 1:] & v[..., :, :-1]
        my = v[..., 1:, :] & v[..., :-1, :]
        pairs = mx.sum() + my.sum()
        if int(pairs) == 0:
            continue
        gx = (r[..., :, 1:] - r[..., :, :-1]).abs()
        gy = (r[..., 1:, :] - r[..., :-1, :]).abs()
        total = total + (gx[mx].sum() + gy[my].sum()) / pairs
        used += 1
    return total / max(used, 1)
