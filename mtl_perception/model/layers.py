"""Building blocks shared by all decoder variants (so variants differ only where they should)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv -> BatchNorm -> activation. ``fuse_bn_`` folds the BN into the conv for deployment."""

    def __init__(self, cin: int, cout: int, k: int = 3, act: bool = True, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, padding=k // 2, bias=False, groups=groups),
            nn.BatchNorm2d(cout),
            nn.GELU() if act else nn.Identity(),
        )


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a conv equal to ``bn(conv(x))`` in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
    return fused


def fuse_conv_bn_modules_(module: nn.Module) -> nn.Module:
    """In place: replace every ``ConvBNAct``'s conv+BN with one conv (eval-mode equivalent)."""
    for child in module.modules():
        if isinstance(child, ConvBNAct) and isinstance(child[1], nn.BatchNorm2d):
            child[0] = fuse_conv_bn(child[0], child[1])
            child[1] = nn.Identity()
    return module


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LevelFusion(nn.Module):
    """Pixel-wise softmax fusion over decoder levels (as in the MLoRE reference code).

    concat(levels) -> 1x1 conv to C -> BN -> GELU -> 3x3 conv to L weights -> softmax over L
    -> weighted sum of the levels.
    """

    def __init__(self, channels: int, num_levels: int = 4) -> None:
        super().__init__()
        self.mask = nn.Sequential(
            ConvBNAct(channels * num_levels, channels, k=1),
            nn.Conv2d(channels, num_levels, 3, padding=1),
        )

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(self.mask(torch.cat(levels, dim=1)), dim=1)
        stacked = torch.stack(levels, dim=1)  # B, L, C, H, W
        return (stacked * weights.unsqueeze(2)).sum(dim=1)


class ConvHead(nn.Module):
    """3x3 conv -> BN -> GELU -> 1x1 conv to the task's output channels."""

    def __init__(self, cin: int, cout: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or cin
        self.block = ConvBNAct(cin, hidden, k=3)
        self.out = nn.Conv2d(hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(x))


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
