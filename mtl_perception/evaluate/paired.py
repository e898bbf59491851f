"""How sure is a move on the real frames? A paired bootstrap over frames of two models' scores.

The real sets are small (3 labelled Cityscapes frames, 2 CamVid, 13 depth frames), so a 1-point move
can be one frame's luck. Frames are the independent unit: each resample draws the frames with
replacement, the SAME draw for both models (paired: a hard frame is hard for both), and recomputes
every headline metric exactly as the scorer aggregates it (pooled confusion for mIoU; mean over
frames and pixel-pooled AbsRel for depth). The 2.5 / 97.5 % percentiles of new - old give a 95 %
interval; ``depth_abs_rel_set_mean`` weights every real set alike and resamples frames within their
set (a one-frame set never varies, so that interval is narrower than the truth: it shows whether any
frame flips the sign). ``p_new_better`` is the share of resamples in which the new model is better (ties count
half). With two or three frames there are only a handful of distinct resamples: the interval is
coarse, and saying so is the point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_perception.evaluate.metrics import SegMeter

RESAMPLES = 2000


def _seg_stack(meters: list[SegMeter]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.stack([m.confusion for m in meters]).astype(np.float64),
        np.stack([m._extra_fn for m in meters]).astype(np.float64),
    )


def _miou(conf: np.ndarray, extra_fn: np.ndarray, classes: list[int] | None) -> np.ndarray:
    """mIoU over the GT-present classes (optionally only ``classes``) of a batch (B, C, C) of
    confusions, as ``SegMeter.compute()["miou_present"]`` / ``miou_over`` compute it."""
    tp = np.diagonal(conf, axis1=1, axis2=2)
    gt = conf.sum(2) + extra_fn
    union = gt + conf.sum(1) - tp
    iou = tp / np.maximum(union, 1e-8)
    present = gt > 0
    if classes is not None:
        keep = np.zeros(conf.shape[1], bool)
        keep[classes] = True
        present = present & keep
    n = present.sum(1)
    return np.where(n > 0, (iou * present).sum(1) / np.maximum(n, 1), np.nan)


def _pixel_acc(conf: np.ndarray, extra_fn: np.ndarray) -> np.ndarray:
    tp = np.diagonal(conf, axis1=1, axis2=2).sum(1)
    return tp / np.maximum(conf.sum((1, 2)) + extra_fn.sum(1), 1)


def _summary(new: np.ndarray, old: np.ndarray, lower_is_better: bool, frames: int) -> dict[str, Any]:
    """``new`` / ``old``: the metric on the full set first, then on every resample."""
    diff = new[1:] - old[1:]
    ok = np.isfinite(diff)
    better = -diff[ok] if lower_is_better else diff[ok]
    lo, hi = np.percentile(diff[ok], [2.5, 97.5]) if ok.any() else (np.nan, np.nan)
    return {
        "new": float(new[0]),
        "old": float(old[0]),
        "difference": float(new[0] - old[0]),
        "ci95": [float(lo), float(hi)],
        "p_new_better": float(((better > 0).sum() + 0.5 * (better == 0).sum()) / max(ok.sum(), 1)),
        "lower_is_better": lower_is_better,
        "frames": frames,
    }


def paired_bootstrap(new: Any, old: Any, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of two :class:`~mtl_perception.evaluate.realdata.RealDataScorer` that scored the
    same frames in the same order. Returns ``{"resamples", "seed", "metrics": {name: summary}}``;
    differences are new - old."""
    from mtl_perception.evaluate.realdata import CAMVID_ONE_TO_ONE

    names_new = [(f["set"], f["name"]) for f in new.frames]
    if names_new != [(f["set"], f["name"]) for f in old.frames]:
        raise ValueError("paired bootstrap: the two models scored different frames (or another order)")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    metrics: dict[str, Any] = {}

    def draws(n: int) -> np.ndarray:
        """(1 + resamples, n) counts: the full set once, then multinomial resamples of n frames."""
        full = np.ones((1, n))
        return np.concatenate([full, rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)]).astype(np.float64)

    for space, classes, key in (("cityscapes", None, "cityscapes"), ("camvid", list(CAMVID_ONE_TO_ONE), "camvid_8")):
        idx = [
            i for i, m in enumerate(new.frame_seg) if m is not None and new.frames[i]["semseg"]["label_space"] == space
        ]
        if not idx:
            continue
        counts = draws(len(idx))
        per_model = []
        for scorer in (new, old):
            conf, extra = _seg_stack([scorer.frame_seg[i] for i in idx])
            pooled = np.einsum("bf,fij->bij", counts, conf)
            pooled_extra = counts @ extra
            per_model.append((_miou(pooled, pooled_extra, classes), _pixel_acc(pooled, pooled_extra)))
        (m_new, a_new), (m_old, a_old) = per_model
        metrics[f"{key}_miou"] = _summary(m_new, m_old, False, len(idx))
        if space == "cityscapes":
            metrics[f"{key}_pixel_acc"] = _summary(a_new, a_old, False, len(idx))

    idx = [i for i, f in enumerate(new.frames) if "depth" in f and f["depth"]["n_valid"] > 0]
    if idx:
        counts = draws(len(idx))
        vals = {}
        for tag, scorer in (("new", new), ("old", old)):
            recs = [scorer.frames[i]["depth"] for i in idx]
            a = np.array([r["abs_rel"] for r in recs])
            d1 = np.array([r["delta1"] for r in recs])
            n = np.array([r["n_valid"] for r in recs], np.float64)
            vals[tag] = {
                "depth_abs_rel": counts @ a / len(idx),
                "depth_abs_rel_pooled": counts @ (a * n) / (counts @ n),
                "depth_delta1": counts @ d1 / len(idx),
                "depth_delta1_pooled": counts @ (d1 * n) / (counts @ n),
            }
        for name in vals["new"]:
            metrics[name] = _summary(vals["new"][name], vals["old"][name], "abs_rel" in name, len(idx))
        # every set weighted alike (the scorer's per_set_mean): frames are resampled within their set
        # (stratified), so no set drops out of a resample and no one frame holds the figure, as the
        # Cityscapes stereo frame holds most of the pooled pixels. Drawn last: the figures above keep
        # the draws they had before this one existed.
        sets = sorted({new.frames[i]["set"] for i in idx})
        per_set = {tag: np.zeros(1 + resamples) for tag in ("new", "old")}
        for name in sets:
            members = [i for i in idx if new.frames[i]["set"] == name]
            counts = draws(len(members))
            for tag, scorer in (("new", new), ("old", old)):
                a = np.array([scorer.frames[i]["depth"]["abs_rel"] for i in members])
                per_set[tag] += counts @ a / len(members) / len(sets)
        metrics["depth_abs_rel_set_mean"] = _summary(per_set["new"], per_set["old"], True, len(idx))
    return {"resamples": resamples, "seed": seed, "unit": "frame", "metrics": metrics}


def format_paired(paired: dict[str, Any], new_label: str, old_label: str) -> str:
    """A markdown table of :func:`paired_bootstrap`'s result."""
    lines = [
        f"{new_label} vs {old_label}: paired bootstrap over frames ({paired['resamples']} resamples; 95 % interval "
        "of new - old; P = share of resamples where the new model is better)",
        "",
        "| metric | frames | new | old | new - old | 95 % interval | P(new better) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in paired["metrics"].items():
        pct = "abs_rel" not in name
        f = (lambda x: f"{100 * x:+.1f}") if pct else (lambda x: f"{x:+.3f}")
        v = (lambda x: f"{100 * x:.1f} %") if pct else (lambda x: f"{x:.3f}")
        lo, hi = m["ci95"]
        lines.append(
            f"| {name} | {m['frames']} | {v(m['new'])} | {v(m['old'])} | {f(m['difference'])} | "
            f"[{f(lo)}, {f(hi)}] | {m['p_new_better']:.2f} |"
        )
    return "\n".join(lines)
