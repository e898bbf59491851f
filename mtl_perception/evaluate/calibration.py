"""Calibration of the semantic confidence: expected calibration error and temperature scaling.

Confidence = softmax probability of the predicted class (``FrameResult.confidence``). ECE follows
Guo et al. 2017: 15 equal-width bins over [0, 1] of the confidence, pooled over every pixel with a
valid label; ECE = sum_b n_b / N * |accuracy_b - mean confidence_b|. ``CalibrationMeter`` keeps
only per-bin sums (pixel counts, confidence sums, correct counts), so meters of several processes
merge exactly by adding their ``state()`` arrays (e.g. an all-reduce in a sharded replay-eval).

Temperature scaling divides the logits by one scalar T > 0 fitted by minimising the negative
log-likelihood on held-out frames. NLL is convex in 1/T, so a golden-section search on log T
finds the global minimum deterministically. Fit on held-out synthetic frames only: real frames
(``../shared/realdata``) are for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

ECE_BINS = 15

__all__ = [
    "ECE_BINS",
    "CalibrationMeter",
    "collect_logits",
    "ece_from_logits",
    "fit_temperature",
    "nll",
    "softmax_confidence",
]


class CalibrationMeter:
    """Reliability-diagram sums over pixels with a valid label (``gt != ignore_index``)."""

    def __init__(self, n_bins: int = ECE_BINS, ignore_index: int = 255) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins = n_bins
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.count = np.zeros(self.n_bins, np.int64)
        self.correct = np.zeros(self.n_bins, np.int64)
        self.conf_sum = np.zeros(self.n_bins, np.float64)

    def update(self, confidence: Any, pred: Any, gt: Any, valid: Any = None) -> None:
        """Add one image (or batch): confidence in [0, 1], predicted and GT class ids, same shape.
        ``valid``: an optional extra mask of pixels to score (e.g. predictions a label map ignores)."""
        c = np.asarray(confidence, np.float64).ravel()
        p = np.asarray(pred).ravel()
        g = np.asarray(gt).ravel()
        if not (c.shape == p.shape == g.shape):
            raise ValueError(f"confidence, pred and gt sizes differ: {c.size}, {p.size}, {g.size}")
        keep = g != self.ignore_index
        if valid is not None:
            keep &= np.asarray(valid, bool).ravel()
        c, hit = c[keep], (p[keep] == g[keep])
        # bin b holds (b/n, (b+1)/n]; confidence 0 joins bin 0 and 1.0 the last one
        b = np.clip(np.ceil(c * self.n_bins).astype(np.int64) - 1, 0, self.n_bins - 1)
        self.count += np.bincount(b, minlength=self.n_bins)
        self.correct += np.bincount(b, weights=hit, minlength=self.n_bins).astype(np.int64)
        self.conf_sum += np.bincount(b, weights=c, minlength=self.n_bins)

    def state(self) -> np.ndarray:
        """(3, n_bins) float64: counts, correct counts, confidence sums; add two to merge meters."""
        return np.stack([self.count.astype(np.float64), self.correct.astype(np.float64), self.conf_sum])

    def merge(self, other: CalibrationMeter | np.ndarray) -> CalibrationMeter:
        """Add another meter (or its ``state()``, e.g. all-reduced) into this one; returns self."""
        s = other.state() if isinstance(other, CalibrationMeter) else np.asarray(other, np.float64)
        if s.shape != (3, self.n_bins):
            raise ValueError(f"state must be (3, {self.n_bins}), got {s.shape}")
        self.count += np.rint(s[0]).astype(np.int64)
        self.correct += np.rint(s[1]).astype(np.int64)
        self.conf_sum += s[2]
        return self

    @classmethod
    def from_state(cls, state: Any, ignore_index: int = 255) -> CalibrationMeter:
        s = np.asarray(state, np.float64)
        return cls(s.shape[1], ignore_index).merge(s)

    def compute(self) -> dict[str, Any]:
        """``ece`` (fraction, 0 = perfectly calibrated), ``mce`` (worst bin), pixel ``accuracy`` and
        ``mean_confidence``, and the per-bin reliability diagram."""
        n = int(self.count.sum())
        nan = float("nan")
        if n == 0:
            return {"ece": nan, "mce": nan, "pixels": 0, "accuracy": nan, "mean_confidence": nan, "bins": self.n_bins}
        filled = self.count > 0
        acc = np.where(filled, self.correct / np.maximum(self.count, 1), np.nan)
        conf = np.where(filled, self.conf_sum / np.maximum(self.count, 1), np.nan)
        gap = np.abs(np.nan_to_num(acc) - np.nan_to_num(conf))
        return {
            "ece": float((self.count / n * gap).sum()),
            "mce": float(gap[filled].max()),
            "pixels": n,
            "accuracy": float(self.correct.sum() / n),
            "mean_confidence": float(self.conf_sum.sum() / n),
            "bins": self.n_bins,
            "bin_count": self.count.tolist(),
            "bin_accuracy": [None if math.isnan(v) else float(v) for v in acc],
            "bin_confidence": [None if math.isnan(v) else float(v) for v in conf],
        }


# ---------------------------------------------------------------------- logits of pixels (N, K)
def _log_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_confidence(logits: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) logits -> (predicted ids, max softmax probability at ``temperature``)."""
    logp = _log_softmax(logits, temperature)
    return logp.argmax(axis=1), np.exp(logp.max(axis=1))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, chunk: int = 1 << 18) -> float:
    """Mean negative log-likelihood of ``labels`` (N,) under softmax(``logits`` (N, K) / T)."""
    total, n = 0.0, len(labels)
    if n == 0:
        return float("nan")
    for s in range(0, n, chunk):  # chunks: a float64 copy of 1M x 19 logits would be 150 MB
        logp = _log_softmax(logits[s : s + chunk], temperature)
        total -= float(logp[np.arange(logp.shape[0]), labels[s : s + chunk]].sum())
    return total / n


def ece_from_logits(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, n_bins: int = ECE_BINS, chunk: int = 1 << 18
) -> dict[str, Any]:
    """``CalibrationMeter.compute()`` of (N, K) logits against (N,) labels at ``temperature``."""
    meter = CalibrationMeter(n_bins, ignore_index=-1)
    for s in range(0, len(labels), chunk):
        pred, conf = softmax_confidence(logits[s : s + chunk], temperature)
        meter.update(conf, pred, labels[s : s + chunk])
    return meter.compute()


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0), tol: float = 1e-4
) -> float:
    """T minimising ``nll(logits, labels, T)``: golden-section search on log T within ``bounds``.

    NLL is convex in 1/T (a log-sum-exp of functions linear in 1/T minus a linear term), so it is
    unimodal in log T and the search finds the global minimum (clamped to ``bounds``)."""
    if len(labels) == 0:
        raise ValueError("no labelled pixels to fit a temperature on")
    a, b = math.log(bounds[0]), math.log(bounds[1])
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return float(math.exp((a + b) / 2.0))


def collect_logits(
    engine: Any,
    samples: Iterable[dict[str, Any]],
    limit: int | None = None,
    pixel_stride: int = 4,
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Network logits of labelled pixels: ((N, K) float32, (N,) int64 GT ids, frames used).

    Each frame goes through ``engine.infer`` as the pipeline sends it; the logits of a frame pixel
    are those of the grid pixel that the products' nearest resize assigns to it (the index map
    comes from the same ``cv2.resize``), so the fit sees exactly the confidence the node publishes.
    Every ``pixel_stride``-th row and column with a valid label is kept (memory: 200 frames at
    256x512, stride 4, 19 classes = 125 MB)."""
    import cv2

    chunks: list[np.ndarray] = []
    gts: list[np.ndarray] = []
    frames = 0
    for i, sample in enumerate(samples):
        if limit is not None and i >= limit:
            break
        gt = sample.get("semseg")
        if gt is None:
            continue
        rgb = sample["image"]
        fh, fw = rgb.shape[:2]
        box = engine.letterbox((fh, fw))
        logits = box.content(engine.infer(rgb)["semseg"][0])  # (K, h, w) on the content grid
        k, h, w = logits.shape
        if (h, w) == (fh, fw):
            src = np.arange(h * w, dtype=np.int64).reshape(h, w)
        else:  # grid index of every frame pixel, by the products' own nearest resize
            idx = np.arange(h * w, dtype=np.float32).reshape(h, w)  # exact in float32 below 2^24
            src = np.rint(cv2.resize(idx, (fw, fh), interpolation=cv2.INTER_NEAREST)).astype(np.int64)
        g = np.asarray(gt)[::pixel_stride, ::pixel_stride].ravel().astype(np.int64)
        s = src[::pixel_stride, ::pixel_stride].ravel()
        keep = (g != ignore_index) & (g >= 0) & (g < k)
        flat = np.ascontiguousarray(logits, np.float32).reshape(k, h * w)
        chunks.append(flat[:, s[keep]].T.copy())
        gts.append(g[keep])
        frames += 1
    if not chunks:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), frames
    return np.concatenate(chunks), np.concatenate(gts), frames
