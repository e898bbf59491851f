"""Feature-statistics perturbation for domain generalisation (DSU: Li et al., "Uncertainty Modeling
for Out-of-Distribution Generalization", ICLR 2022).

Why: a CNN's channel means and standard deviations over an image carry its *style* (lighting,
texture statistics, camera), and a network trained on one rendered world learns that world's
style. During training DSU replaces each image's per-channel mean and std by a draw from a Gaussian
around them whose spread is the batch's variance of those statistics, so the layers after it see
plausible other styles with the same content. In eval mode it is the identity: exports, engines and
the node never see it.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureStatisticsPerturbation(nn.Module):
    """DSU on a (B, C, H, W) map, with probability ``p`` per batch, in training mode only."""

    def __init__(self, p: float = 0.5, eps: float = 1e-6) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"style perturbation probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.shape[0] < 2 or float(torch.rand(())) >= self.p:
            return x
        dtype = x.dtype
        xf = x.float()
        mu = xf.mean(dim=(2, 3), keepdim=True)
        sig = (xf.var(dim=(2, 3), keepdim=True) + self.eps).sqrt()
        # the spread of the statistics across the batch: how far styles differ in this batch
        mu_spread = (mu.var(dim=0, keepdim=True) + self.eps).sqrt()
        sig_spread = (sig.var(dim=0, keepdim=True) + self.eps).sqrt()
        beta = mu + torch.randn_like(mu) * mu_spread
        gamma = sig + torch.randn_like(sig) * sig_spread
        return ((xf - mu) / sig * gamma + beta).to(dtype)
