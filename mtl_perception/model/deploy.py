"""Deploy (inference) form of a model: re-parameterized, BN folded, eval mode."""

from __future__ import annotations

import copy

from torch import nn

from mtl_perception.model.layers import fuse_conv_bn_modules_


def deploy(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy re-parameterized for inference (the input is left untouched).

    Each decoder folds what it can (``Decoder.deploy_``; MLoRE folds every module into one
    dense 3x3 conv per task and image), then every Conv->BN pair is fused. The result is
    numerically equivalent to ``model.eval()`` (tested) and exportable to ONNX.
    """
    if getattr(model, "deployed", False):
        return model
    out = copy.deepcopy(model).eval()
    out.decoder.deploy_()
    fuse_conv_bn_modules_(out)
    for p in out.parameters():
        p.requires_grad_(False)
    out.deployed = True
    return out
