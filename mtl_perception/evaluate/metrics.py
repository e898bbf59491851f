"""Segmentation and depth metrics with the MLoRE/InvPT conventions, plus Maninis' delta_m.

Why dataset-accumulated: the papers pool TP/FP/FN (segmentation) and squared errors (depth) over
all pixels of the whole set, not per image; a mean of per-image scores weights small/empty images
differently and is not comparable to published numbers. Inputs may be numpy arrays or torch
tensors (any device); predictions for segmentation are class ids, not logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["DepthMeter", "SegMeter", "delta_m", "miou_over"]


def _np(x: Any) -> np.ndarray:
    """numpy view of a numpy array or torch tensor (detached, on CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class SegMeter:
    """Confusion matrix accumulated over the dataset (rows = GT, cols = prediction)."""

    def __init__(self, num_classes: int = 19, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._extra_fn = np.zeros(self.num_classes, dtype=np.int64)  # GT pixels predicted out of range

    def update(self, pred: Any, gt: Any) -> None:
        """Add a batch or image: ``pred`` class ids with the same shape as ``gt``."""
        p = _np(pred).astype(np.int64).ravel()
        g = _np(gt).astype(np.int64).ravel()
        if p.shape != g.shape:
            raise ValueError(f"pred and gt sizes differ: {_np(pred).shape} vs {_np(gt).shape}")
        keep = g != self.ignore_index
        p, g = p[keep], g[keep]
        if g.size and (g.min() < 0 or g.max() >= self.num_classes):
            raise ValueError(f"gt has ids outside [0, {self.num_classes}) other than ignore {self.ignore_index}")
        # A prediction outside the class range (e.g. 255) is a miss: counts as FN of the GT class.
        bad = (p < 0) | (p >= self.num_classes)
        fn_only = g[bad]
        p, g = p[~bad], g[~bad]
        n = self.num_classes
        self.confusion += np.bincount(g * n + p, minlength=n * n).reshape(n, n)
        self._extra_fn += np.bincount(fn_only, minlength=n)

    def compute(self) -> dict[str, Any]:
        """``miou_all`` (papers: absent classes count 0), ``miou_present`` (classes in GT), etc.
        For a mean over a subset of classes see :func:`miou_over`."""
        cm = self.confusion.astype(np.float64)
        extra_fn = self._extra_fn.astype(np.float64)
        tp = np.diag(cm)
        gt_count = cm.sum(1) + extra_fn
        pred_count = cm.sum(0)
        union = gt_count + pred_count - tp
        iou_papers = tp / np.maximum(union, 1e-8)  # absent everywhere -> 0, as in eval_semseg.py
        present = gt_count > 0
        per_class = np.where(union > 0, iou_papers, np.nan)
        total = gt_count.sum()
        acc_c = np.where(present, tp / np.maximum(gt_count, 1), np.nan)
        return {
            "miou_all": float(iou_papers.mean()),
            "miou_present": float(iou_papers[present].mean()) if present.any() else float("nan"),
            "per_class_iou": per_class.tolist(),
            "pixel_acc": float(tp.sum() / total) if total else float("nan"),
            "mean_acc": float(np.nanmean(acc_c)) if present.any() else float("nan"),
            # GT pixels per class (incl. those predicted out of range): which classes are "present"
            "gt_pixels": gt_count.astype(np.int64).tolist(),
            "pred_pixels": pred_count.astype(np.int64).tolist(),
            # what an IoU hides: a class found everywhere it is (recall) but called far more often
            # than it is there (precision) has a low IoU for the opposite reason of one never found
            "per_class_recall": np.where(present, tp / np.maximum(gt_count, 1), np.nan).tolist(),
            "per_class_precision": np.where(pred_count > 0, tp / np.maximum(pred_count, 1), np.nan).tolist(),
            "confusion": self.confusion.copy(),
        }


def scored_depth(depth: Any) -> np.ndarray:
    """A pipeline depth map as the meters score it: NaN (invalid: no answer) becomes 0 m, a miss;
    +inf (sky, beyond range: REP 117) stays, and :class:`DepthMeter` counts it as ``max_depth``."""
    return np.nan_to_num(np.asarray(depth, np.float32), nan=0.0, posinf=np.inf, neginf=-np.inf)


class DepthMeter:
    """Pixel-pooled depth errors over the dataset (eval_depth.py convention) + error vs distance.

    Valid pixels: finite gt with ``min_depth < gt < max_depth``. Predictions are clamped to
    >= 1e-9 so log metrics stay finite. ``bin_size`` metre bins up to ``max_depth`` give abs
    error and abs_rel per distance bin (for error-vs-distance plots).
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 80.0, bin_size: float = 5.0) -> None:
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.bin_edges = np.append(np.arange(0.0, max_depth - 1e-9, bin_size), max_depth)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.sums = dict.fromkeys(("sq", "sq_log", "abs_rel", "sq_rel", "d1", "d2", "d3", "log_diff", "abs"), 0.0)
        nb = len(self.bin_edges) - 1
        self.bin_n = np.zeros(nb, dtype=np.int64)
        self.bin_abs = np.zeros(nb, dtype=np.float64)
        self.bin_abs_rel = np.zeros(nb, dtype=np.float64)

    def update(self, pred: Any, gt: Any) -> None:
        """Add predictions and GT in metres (same shape; e.g. (B,1,H,W) or (H,W))."""
        p = _np(pred).astype(np.float64)
        g = _np(gt).astype(np.float64)
        if p.shape != g.shape:
            raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
        valid = np.isfinite(g) & (g > self.min_depth) & (g < self.max_depth)
        g = g[valid]
        p = p[valid]
        p = np.where(np.isfinite(p), p, self.max_depth)  # a NaN/inf prediction is a (large) error
        p = np.maximum(p, 1e-9)
        if g.size == 0:
            return
        diff = p - g
        log_diff = np.log(p) - np.log(g)
        ratio = np.maximum(p / g, g / p)
        s = self.sums
        s["sq"] += float((diff**2).sum())
        s["sq_log"] += float((log_diff**2).sum())
        s["abs_rel"] += float((np.abs(diff) / g).sum())
        s["sq_rel"] += float((diff**2 / g).sum())
        s["abs"] += float(np.abs(diff).sum())
        s["log_diff"] += float(log_diff.sum())
        s["d1"] += float((ratio < 1.25).sum())
        s["d2"] += float((ratio < 1.25**2).sum())
        s["d3"] += float((ratio < 1.25**3).sum())
        self.n += int(g.size)
        b = np.clip(np.digitize(g, self.bin_edges) - 1, 0, len(self.bin_n) - 1)
        self.bin_n += np.bincount(b, minlength=len(self.bin_n))
        self.bin_abs += np.bincount(b, weights=np.abs(diff), minlength=len(self.bin_n))
        self.bin_abs_rel += np.bincount(b, weights=np.abs(diff) / g, minlength=len(self.bin_n))

    def compute(self) -> dict[str, Any]:
        """rmse, rmse_log, abs_rel, sq_rel, mae, delta1-3, silog (x100, scale-invariant log) and bins."""
        n = self.n
        s = self.sums
        nan = float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            bin_abs = np.where(self.bin_n > 0, self.bin_abs / self.bin_n, np.nan)
            bin_abs_rel = np.where(self.bin_n > 0, self.bin_abs_rel / self.bin_n, np.nan)
        if n == 0:
            base = dict.fromkeys(
                ("rmse", "rmse_log", "abs_rel", "sq_rel", "mae", "delta1", "delta2", "delta3", "silog"), nan
            )
        else:
            mean_sq_log = s["sq_log"] / n
            mean_log = s["log_diff"] / n
            base = {
                "rmse": float(np.sqrt(s["sq"] / n)),
                "rmse_log": float(np.sqrt(mean_sq_log)),
                "abs_rel": s["abs_rel"] / n,
                "sq_rel": s["sq_rel"] / n,
                "mae": s["abs"] / n,
                "delta1": s["d1"] / n,
                "delta2": s["d2"] / n,
                "delta3": s["d3"] / n,
                # KITTI benchmark SILog: 100 * sqrt(mean(d^2) - mean(d)^2), d = log pred - log gt.
                "silog": float(100.0 * np.sqrt(max(mean_sq_log - mean_log**2, 0.0))),
            }
        base.update(
            {
                "n_valid": n,
                "bin_edges": self.bin_edges.tolist(),
                "bin_count": self.bin_n.tolist(),
                "bin_abs_err": bin_abs.tolist(),
                "bin_abs_rel": bin_abs_rel.tolist(),
            }
        )
        return base


def miou_over(seg: Mapping[str, Any], classes: Any) -> float:
    """Mean IoU over the ``classes`` (ids) of a ``SegMeter.compute()`` result that are present in the
    GT (NaN when none is). E.g. CamVid's 8 one-to-one classes out of its 11."""
    iou = np.asarray(seg["per_class_iou"], np.float64)
    gt = np.asarray(seg["gt_pixels"])
    ids = [int(c) for c in classes if gt[int(c)] > 0]
    return float(iou[ids].mean()) if ids else float("nan")


def delta_m(mtl: Mapping[str, float], stl: Mapping[str, float], lower_is_better: Mapping[str, bool]) -> float:
    """Maninis et al. multi-task gain in percent (Vandenhende's ``calculate_multi_task_performance``).

    delta_m = 100/T * sum_t (-1)^l_t (M_mtl,t - M_stl,t) / M_stl,t with l_t = 1 when lower is
    better. Positive = the multi-task model beats the single-task baselines on average.
    """
    keys = list(lower_is_better)
    if not keys:
        raise ValueError("delta_m needs at least one metric in lower_is_better")
    missing = [k for k in keys if k not in mtl or k not in stl]
    if missing:
        raise ValueError(f"delta_m: metrics {missing} missing from mtl or stl results")
    total = 0.0
    for k in keys:
        ref = float(stl[k])
        if ref == 0.0:
            raise ValueError(f"delta_m: single-task reference for {k!r} is 0")
        sign = -1.0 if lower_is_better[k] else 1.0
        total += sign * (float(mtl[k]) - ref) / ref
    return 100.0 * total / len(keys)
