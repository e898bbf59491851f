"""Depth uncertainty in metres from the network's ``depth_log_sigma`` (numpy + OpenCV, no torch).

The model predicts, per pixel, log sigma of a Gaussian on log depth: ``log d_true ~ N(log d, s^2)``
with ``s = exp(depth_log_sigma)``. Its 1-sigma (68.3 %) interval in metres is ``[d e^-s, d e^s]``,
asymmetric around ``d``. What is published (``FrameResult.depth_uncertainty``, ``~/depth/uncertainty``)
is HALF ITS WIDTH: ``u = d sinh(s)`` metres (= d s to first order, the delta-method standard
deviation in metres). ``s`` is recovered exactly as ``asinh(u / d)``, so a consumer holding depth and
uncertainty holds the whole distribution; k-sigma intervals are ``[d e^-ks, d e^ks]``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

OUTPUT = "depth_log_sigma"  # the network output (mtl_perception.model.uncertainty.OUTPUT; no torch here)
DISTRIBUTION = "gaussian_log_depth"


def has_depth_uncertainty(info: Any) -> bool:
    """Does the engine's model (``ModelInfo``) have the depth uncertainty head?"""
    cfg = (getattr(info, "extra", None) or {}).get("config") or {}
    return bool((cfg.get("uncertainty") or {}).get("depth", False))


def uncertainty_from_log_sigma(depth_m: np.ndarray, log_sigma: np.ndarray) -> np.ndarray:
    """Half width in metres of the 1-sigma interval, ``d sinh(exp(log_sigma))``, float32; NaN where
    depth is NaN (same grid as ``depth_m``)."""
    s = cv2.exp(np.asarray(log_sigma, np.float32))
    # sinh(s) = (e^s - e^-s) / 2, in float32 with OpenCV (numpy's sinh is float64-slow on 130k pixels)
    es = cv2.exp(s)
    half = cv2.multiply(cv2.subtract(es, cv2.divide(1.0, es)), 0.5)
    return cv2.multiply(np.asarray(depth_m, np.float32), half)


def log_sigma_from_uncertainty(depth_m: np.ndarray, uncertainty_m: np.ndarray) -> np.ndarray:
    """Inverse of ``uncertainty_from_log_sigma``: the log-space sigma ``s = asinh(u / d)`` (not its log)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arcsinh(np.asarray(uncertainty_m, np.float64) / np.asarray(depth_m, np.float64))
