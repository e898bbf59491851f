"""The multi-task network: backbone (ViT or CNN) -> registered decoder -> shared per-task heads."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.model import uncertainty as _unc
from mtl_perception.model.backbone import build_backbone
from mtl_perception.model.config import depth_uncertainty_enabled
from mtl_perception.model.layers import ConvBNAct, ConvHead, upsample
from mtl_perception.model.registry import Decoder, build_decoder
from mtl_perception.model.tasks import TaskSpec, build_tasks


class MultiTaskModel(nn.Module):
    """``forward(x[B,3,H,W] normalised) -> {"semseg": [B,K,H,W] logits, "depth": [B,1,H,W] m}``.

    The decoder works on the 1/16 grid for every backbone (the papers' ViT setting): a CNN's
    four maps (strides 4-32) are brought to it first (area-pooled down, bilinear up). Its task
    features are upsampled x4 (to 1/4, as in the MLoRE reference); for a CNN the stride-4
    backbone map is added there through a per-task 1x1 projection (a DeepLabv3+-style detail
    skip: thin classes such as poles and signs need it). Then a conv head per task, bilinear
    upsampling to the input size and the task activation (depth: metres, or canonical-camera
    depth when ``camera.canonical_focal`` is set).

    With ``uncertainty: {depth: true}`` a small head on the depth branch's features adds
    ``"depth_log_sigma": [B,1,H,W]``, log sigma of a Gaussian on log depth (``model/uncertainty.py``);
    it reads those features detached and adds nothing to the depth path.
    """

    DECODER_STRIDE = 16

    def __init__(self, cfg: dict[str, Any], load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = cfg
        self.task_specs: dict[str, TaskSpec] = build_tasks(cfg["tasks"])
        h, w = cfg["input_size"]
        self.backbone = build_backbone(cfg["backbone"], (h, w), load_pretrained=load_pretrained)
        self.strides: list[int] = list(self.backbone.strides)
        s = self.DECODER_STRIDE
        grid = (h // s, w // s)
        self.decoder: Decoder = build_decoder(cfg["decoder"], self.backbone.out_dims, list(self.task_specs), grid)
        c = self.decoder.out_channels
        self.heads = nn.ModuleDict(
            {name: ConvHead(c, spec.out_channels, cfg["head"]["channels"]) for name, spec in self.task_specs.items()}
        )
        # the depth task whose features the uncertainty head reads (None: no head)
        self.uncertainty_task: str | None = None
        if depth_uncertainty_enabled(cfg):
            self.uncertainty_task = next(n for n, spec in self.task_specs.items() if spec.type == "depth")
            self.uncertainty = _unc.DepthUncertaintyHead(c)
        # detail skip from the stride-4 map (CNN backbones only)
        self.skips = (
            nn.ModuleDict({name: ConvBNAct(self.backbone.out_dims[0], c, k=1) for name in self.task_specs})
            if self.strides[0] == 4
            else None
        )
        self.register_buffer("mean", torch.tensor(cfg["normalization"]["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["normalization"]["std"]).view(1, 3, 1, 1), persistent=False)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config["input_size"])

    @property
    def output_names(self) -> list[str]:
        """Keys of ``forward``'s dict in order (the ONNX outputs): the tasks, then the uncertainty output."""
        return list(self.task_specs) + ([_unc.OUTPUT] if self.uncertainty_task else [])

    def forward_with_aux(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Task outputs plus auxiliary losses (MoE load balancing, VQ) for training."""
        size = x.shape[-2:]
        feats = self.backbone(x)
        low = feats[0] if self.skips is not None else None
        feats = self._to_decoder_grid(feats)
        task_feats, aux = self.decoder(feats)
        out: dict[str, torch.Tensor] = {}
        log_sigma = None
        for name, spec in self.task_specs.items():
            f = task_feats[name]
            if low is not None:
                f = upsample(f, low.shape[-2:]) + self.skips[name](low)
            else:
                f = upsample(f, (f.shape[-2] * 4, f.shape[-1] * 4))
            y = upsample(self.heads[name](f), size)
            out[name] = spec.activate(y)
            if name == self.uncertainty_task:
                # detached: the head's NLL never reaches the depth branch (depth stays as trained)
                log_sigma = upsample(self.uncertainty(f.detach()), size)
        if log_sigma is not None:
            out[_unc.OUTPUT] = log_sigma  # last, after every task (output_names order)
        return out, aux

    def _to_decoder_grid(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every level onto the 1/16 grid: integer area pooling for finer maps, bilinear x2 for 1/32."""
        out = []
        for f, stride in zip(feats, self.strides):
            if stride < self.DECODER_STRIDE:
                k = self.DECODER_STRIDE // stride
                f = F.avg_pool2d(f, kernel_size=k, stride=k)
            elif stride > self.DECODER_STRIDE:
                # a constant scale factor (not a size computed from the shape) keeps shapes static in
                # ONNX, which the folded MLoRE conv (kernel formed per image) needs
                f = F.interpolate(f, scale_factor=stride // self.DECODER_STRIDE, mode="bilinear", align_corners=False)
            out.append(f)
        return out

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        """Task outputs; with ``with_aux=True`` also the auxiliary losses (so training goes
        through ``__call__`` and DistributedDataParallel's hooks)."""
        out, aux = self.forward_with_aux(x)
        return (out, aux) if with_aux else out

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8/float [0,255] RGB NCHW -> normalised float input."""
        return (images.float() / 255.0 - self.mean) / self.std
