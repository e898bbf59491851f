"""Depth uncertainty head: per pixel, log sigma of a Gaussian on log depth.

Distribution: ``log d_true ~ N(mu, sigma^2)`` with ``mu = log d_pred`` (the depth head's output) and
``sigma = exp(depth_log_sigma)``. In log space sigma is scale-free: the canonical-camera rescale
(metres = canonical * fx / f_c) shifts mu and leaves sigma unchanged, so the head needs no K.

The head sits beside the depth path, never in it: it reads the depth branch's features (detached in
training, so its loss cannot move depth) and adds an output. Depth, semantics and the MLoRE fold are
unchanged by it, and a shipped model can get one by training the head alone
(``config/train/uncertainty_head.yaml``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtl_perception.model.layers import ConvBNAct

OUTPUT = "depth_log_sigma"
# log sigma bounds: sigma in [0.01, 3] (1 % .. a factor e^3 = 20 in depth). A smooth bound (sigmoid)
# rather than a clamp keeps a gradient everywhere; outside it the NLL is meaningless anyway.
LOG_SIGMA_MIN = math.log(0.01)
LOG_SIGMA_MAX = math.log(3.0)
INIT_SIGMA = 0.3  # about the log-depth error of a trained model: a sane start for the NLL
# Cost: sigma is smooth in space, so the head runs at half the depth branch's resolution (stride 8)
# with 16 hidden channels: +0.06 GFLOPs (+1.5 %) on the shipped Lite0 model at 256x512 (3.9); at stride 4
# with 32 channels (as the depth head) it was +0.45 (+12 %).
HIDDEN = 16
POOL = 2


class DepthUncertaintyHead(nn.Module):
    """Depth-branch features (B, C, h, w) -> log sigma (B, 1, h/2, w/2) in [LOG_SIGMA_MIN, LOG_SIGMA_MAX]
    (the caller upsamples it like every head output)."""

    def __init__(self, cin: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.block = ConvBNAct(cin, hidden, k=3)
        self.out = nn.Conv2d(hidden, 1, 1)
        p = (math.log(INIT_SIGMA) - LOG_SIGMA_MIN) / (LOG_SIGMA_MAX - LOG_SIGMA_MIN)
        with torch.no_grad():
            self.out.weight.mul_(0.1)  # starts near INIT_SIGMA everywhere
            self.out.bias.fill_(math.log(p / (1 - p)))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        y = self.out(self.block(F.avg_pool2d(feats, POOL)))
        return LOG_SIGMA_MIN + (LOG_SIGMA_MAX - LOG_SIGMA_MIN) * torch.sigmoid(y)


def gaussian_log_depth_nll(depth_pred: torch.Tensor, log_sigma: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood of log(target) under N(log depth_pred, exp(log_sigma)^2),
    without the constant 0.5 log(2 pi). ``depth_pred`` is detached here: the uncertainty loss trains
    sigma only and never pulls the depth prediction. Invalid targets (non-finite, <= 0) are ignored."""
    valid = torch.isfinite(target) & (target > 0)
    if not bool(valid.any()):
        return log_sigma.sum() * 0.0
    mu = torch.log(depth_pred.detach().float()[valid].clamp_min(1e-6))
    s = log_sigma.float()[valid]
    z = (torch.log(target[valid].float()) - mu) * torch.exp(-s)
    return (s + 0.5 * z.square()).mean()
