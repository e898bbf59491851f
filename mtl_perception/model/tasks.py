"""Task specifications: what a task's head outputs, how it is activated, trained and scored.

Adding a task is a new ``TaskSpec`` factory registered in ``TASK_TYPES`` plus a config entry;
the model, decoders and heads only read ``TaskSpec.out_channels`` and ``TaskSpec.activate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from mtl_perception.model.errors import ConfigError

IGNORE_INDEX = 255


@dataclass(frozen=True)
class TaskSpec:
    """One task of the multi-task network.

    ``activate`` maps raw head outputs to the published quantity (logits stay logits for
    segmentation; depth becomes metres). ``loss`` takes (activated prediction, target) and
    ignores invalid target pixels. ``metrics`` names the headline metrics and whether lower
    is better (used by Delta_m).
    """

    name: str
    type: str
    out_channels: int
    activate: Callable[[torch.Tensor], torch.Tensor]
    loss: Callable[..., torch.Tensor]
    loss_weight: float
    metrics: dict[str, bool]  # metric name -> lower is better
    params: dict[str, Any] = field(default_factory=dict)


def _semseg(name: str, cfg: dict[str, Any]) -> TaskSpec:
    num_classes = int(cfg.get("num_classes", 19))
    ignore_index = int(cfg.get("ignore_index", IGNORE_INDEX))
    if num_classes < 2:
        raise ConfigError(f"tasks.{name}.num_classes must be >= 2, got {num_classes}")

    def loss(logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None = None) -> torch.Tensor:
        # All pixels ignored -> 0 loss rather than NaN (e.g. a crop of pure sky with ignore).
        valid = target != ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        # With class_weight the mean is over the targets' weights, so the loss keeps its scale.
        return F.cross_entropy(logits, target.long(), weight=class_weight, ignore_index=ignore_index)

    return TaskSpec(
        name=name,
        type="semseg",
        out_channels=num_classes,
        activate=lambda x: x,
        loss=loss,
        loss_weight=float(cfg.get("loss_weight", 1.0)),
        metrics={"miou": False, "pixel_acc": False},
        params={"num_classes": num_classes, "ignore_index": ignore_index},
    )


def _depth(name: str, cfg: dict[str, Any]) -> TaskSpec:
    min_depth = float(cfg.get("min_depth", 0.1))
    max_depth = float(cfg.get("max_depth", 120.0))
    loss_type = str(cfg.get("loss", "silog"))
    if not 0 < min_depth < max_depth:
        raise ConfigError(f"tasks.{name}: need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    if loss_type not in ("silog", "l1", "log_l1"):
        raise ConfigError(f"tasks.{name}.loss must be one of silog, l1, log_l1; got {loss_type!r}")
    log_min, log_max = math.log(min_depth), math.log(max_depth)
    silog_lambda = float(cfg.get("silog_lambda", 0.85))

    def activate(x: torch.Tensor) -> torch.Tensor:
        # Log-space sigmoid: strictly positive, bounded, smooth, and with relative (not
        # absolute) resolution, which matches how depth errors are judged (AbsRel, delta).
        return torch.exp(log_min + (log_max - log_min) * torch.sigmoid(x))

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = torch.isfinite(target) & (target > 0)
        if not bool(valid.any()):
            return pred.sum() * 0.0
        p, t = pred[valid], target[valid]
        if loss_type == "l1":
            return (p - t).abs().mean()
        d = torch.log(p) - torch.log(t)
        if loss_type == "log_l1":
            return d.abs().mean()
        # Scale-invariant log loss (Eigen et al.) with lambda < 1 so absolute scale still
        # matters: metric depth is the point of this task.
        return torch.sqrt((d.square().mean() - silog_lambda * d.mean().square()).clamp_min(1e-8))

    return TaskSpec(
        name=name,
        type="depth",
        out_channels=1,
        activate=activate,
        loss=loss,
        loss_weight=float(cfg.get("loss_weight", 1.0)),
        metrics={"rmse": True, "abs_rel": True},
        params={"min_depth": min_depth, "max_depth": max_depth, "loss": loss_type},
    )


TASK_TYPES: dict[str, Callable[[str, dict[str, Any]], TaskSpec]] = {
    "semseg": _semseg,
    "depth": _depth,
}


def build_tasks(cfg: dict[str, dict[str, Any]]) -> dict[str, TaskSpec]:
    """Build task specs from the ``tasks`` section: ``{name: {type: ..., ...}}``.

    ``type`` defaults to the task name, so ``{semseg: {}, depth: {}}`` is valid.
    """
    if not isinstance(cfg, dict) or not cfg:
        raise ConfigError("'tasks' must be a non-empty mapping, e.g. {semseg: {}, depth: {}}")
    specs: dict[str, TaskSpec] = {}
    for name, task_cfg in cfg.items():
        task_cfg = dict(task_cfg or {})
        ttype = task_cfg.pop("type", name)
        if ttype not in TASK_TYPES:
            raise ConfigError(f"tasks.{name}: unknown task type {ttype!r}; known: {sorted(TASK_TYPES)}")
        specs[name] = TASK_TYPES[ttype](name, task_cfg)
    return specs
