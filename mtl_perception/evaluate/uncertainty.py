"""Coverage of the depth uncertainty: how often the ground truth lies inside the predicted intervals.

Distribution (``model/uncertainty.py``): ``log d_true ~ N(log d, s^2)``; the k-sigma interval is
``[d e^-ks, d e^ks]``. For a calibrated Gaussian 68.27 % of the ground-truth depths fall inside the
1-sigma interval and 95.45 % inside the 2-sigma one. ``s`` comes from what the node publishes
(depth d and uncertainty u = d sinh(s) metres: s = asinh(u / d)), so the figure scores the topics.

Pixels scored: finite ground truth in ``(min_depth, max_depth)`` (the ``DepthMeter`` convention) with
a finite prediction. Sums only (counts, sigma sums, NLL sums), so meters merge exactly by addition.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtl_perception.deploy.uncertainty import log_sigma_from_uncertainty

IDEAL = {"within_1sigma": math.erf(1 / math.sqrt(2)), "within_2sigma": math.erf(2 / math.sqrt(2))}
FIELDS = ("n", "in1", "in2", "sigma_sum", "u_sum", "nll_sum")


class CoverageMeter:
    def __init__(self, min_depth: float = 1e-3, max_depth: float = 80.0) -> None:
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(FIELDS, 0.0)

    def update(self, depth: Any, uncertainty: Any, gt: Any) -> None:
        """One image: predicted depth and uncertainty (metres, published form) and GT depth, same shape."""
        d = np.asarray(depth, np.float64)
        u = np.asarray(uncertainty, np.float64)
        g = np.asarray(gt, np.float64)
        if not (d.shape == u.shape == g.shape):
            raise ValueError(f"depth, uncertainty and gt shapes differ: {d.shape}, {u.shape}, {g.shape}")
        valid = np.isfinite(g) & (g > self.min_depth) & (g < self.max_depth)
        valid &= np.isfinite(d) & (d > 0) & np.isfinite(u) & (u > 0)
        if not valid.any():
            return
        d, u, g = d[valid], u[valid], g[valid]
        s = log_sigma_from_uncertainty(d, u)
        z = np.abs(np.log(g) - np.log(d)) / s
        t = self.sums
        t["n"] += float(d.size)
        t["in1"] += float((z <= 1.0).sum())
        t["in2"] += float((z <= 2.0).sum())
        t["sigma_sum"] += float(s.sum())
        t["u_sum"] += float(u.sum())
        # Gaussian NLL of log depth, constant 0.5 log(2 pi) included (comparable across models)
        t["nll_sum"] += float((np.log(s) + 0.5 * z**2 + 0.5 * math.log(2 * math.pi)).sum())

    def state(self) -> np.ndarray:
        return np.array([self.sums[k] for k in FIELDS], np.float64)

    def merge(self, other: CoverageMeter | np.ndarray) -> CoverageMeter:
        s = other.state() if isinstance(other, CoverageMeter) else np.asarray(other, np.float64)
        if s.shape != (len(FIELDS),):
            raise ValueError(f"state must be ({len(FIELDS)},), got {s.shape}")
        for k, v in zip(FIELDS, s):
            self.sums[k] += float(v)
        return self

    def compute(self) -> dict[str, Any]:
        n = self.sums["n"]
        nan = float("nan")
        return {
            "distribution": "gaussian on log depth: log d_true ~ N(log d, s^2); k-sigma interval [d e^-ks, d e^ks]",
            "n_valid": int(n),
            "within_1sigma": self.sums["in1"] / n if n else nan,
            "within_2sigma": self.sums["in2"] / n if n else nan,
            "ideal_1sigma": IDEAL["within_1sigma"],
            "ideal_2sigma": IDEAL["within_2sigma"],
            "mean_sigma_log": self.sums["sigma_sum"] / n if n else nan,
            "mean_uncertainty_m": self.sums["u_sum"] / n if n else nan,
            "nll": self.sums["nll_sum"] / n if n else nan,
        }


def format_coverage(cov: dict[str, Any]) -> str:
    """One line for the CLIs."""
    return (
        f"depth interval coverage (Gaussian on log depth): 1-sigma {100 * cov['within_1sigma']:.1f} % "
        f"(ideal 68.3), 2-sigma {100 * cov['within_2sigma']:.1f} % (ideal 95.4); mean sigma "
        f"{cov['mean_sigma_log']:.3f} (log), mean half width {cov['mean_uncertainty_m']:.2f} m, "
        f"NLL {cov['nll']:.3f}, {cov['n_valid']} px"
    )
