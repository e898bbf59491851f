"""The multi-task network: ViT backbone -> registered decoder -> shared per-task heads."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_perception.model.backbone import ViTBackbone
from mtl_perception.model.layers import ConvHead, upsample
from mtl_perception.model.registry import Decoder, build_decoder
from mtl_perception.model.tasks import TaskSpec, build_tasks


class MultiTaskModel(nn.Module):
    """``forward(x[B,3,H,W] normalised) -> {"semseg": [B,K,H,W] logits, "depth": [B,1,H,W] m}``.

    The decoder returns task features on the 1/16 grid; they are upsampled x4 (to 1/4, as
    in the MLoRE reference), passed through a conv head per task, upsampled bilinearly to
    the input size and activated by the task spec (depth becomes metres).
    """

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.config = cfg
        self.task_specs: dict[str, TaskSpec] = build_tasks(cfg["tasks"])
        h, w = cfg["input_size"]
        bb = cfg["backbone"]
        self.backbone = ViTBackbone(
            name=bb["name"],
            img_size=(h, w),
            taps=bb["taps"],
            pretrained_path=bb["pretrained_path"],
            drop_path_rate=bb["drop_path_rate"],
            kwargs=bb["kwargs"],
        )
        stride = self.backbone.patch_size
        grid = (h // stride, w // stride)
        self.decoder: Decoder = build_decoder(cfg["decoder"], self.backbone.out_dims, list(self.task_specs), grid)
        c = self.decoder.out_channels
        self.heads = nn.ModuleDict(
            {name: ConvHead(c, spec.out_channels, cfg["head"]["channels"]) for name, spec in self.task_specs.items()}
        )
        self.register_buffer("mean", torch.tensor(cfg["normalization"]["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["normalization"]["std"]).view(1, 3, 1, 1), persistent=False)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config["input_size"])

    def forward_with_aux(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Task outputs plus auxiliary losses (MoE load balancing, VQ) for training."""
        size = x.shape[-2:]
        feats = self.backbone(x)
        task_feats, aux = self.decoder(feats)
        out: dict[str, torch.Tensor] = {}
        for name, spec in self.task_specs.items():
            f = task_feats[name]
            f = upsample(f, (f.shape[-2] * 4, f.shape[-1] * 4))
            y = upsample(self.heads[name](f), size)
            out[name] = spec.activate(y)
        return out, aux

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        """Task outputs; with ``with_aux=True`` also the auxiliary losses (so training goes
        through ``__call__`` and DistributedDataParallel's hooks)."""
        out, aux = self.forward_with_aux(x)
        return (out, aux) if with_aux else out

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8/float [0,255] RGB NCHW -> normalised float input."""
        return (images.float() / 255.0 - self.mean) / self.std
