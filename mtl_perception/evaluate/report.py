"""Markdown evaluation report with plots: per-class IoU, confusion matrix, depth error vs
distance, and a grid of sample predictions. matplotlib (Agg) only; no display needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.atomic_io import atomic_savefig, atomic_write_json, atomic_write_text
from mtl_perception.visualize import colorize_depth, colorize_labels, error_map


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_class_iou(per_class: list[float], names: list[str], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4))
    vals = [0.0 if v is None or np.isnan(v) else 100 * v for v in per_class]
    absent = [v is None or np.isnan(v) for v in per_class]
    bars = ax.bar(range(len(vals)), vals, color=["#bbbbbb" if a else "#3a7ebf" for a in absent])
    for b, a in zip(bars, absent):
        if a:
            ax.text(b.get_x() + b.get_width() / 2, 1, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Per-class IoU (grey n/a: class absent from ground truth)")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(conf: np.ndarray, names: list[str], path: Path) -> Path:
    plt = _plt()
    conf = np.asarray(conf, np.float64)
    rows = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title("Confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_depth_vs_distance(
    bin_edges: list[float], abs_rel: list[float], abs_err: list[float], counts: list[int], path: Path
) -> Path:
    plt = _plt()
    centers = [(a + b) / 2 for a, b in zip(bin_edges[:-1], bin_edges[1:])]
    fig, ax1 = plt.subplots(figsize=(8, 4))
    ax1.plot(centers, abs_rel, "o-", color="#c0392b", label="AbsRel")
    ax1.set_xlabel("ground-truth distance (m)")
    ax1.set_ylabel("AbsRel", color="#c0392b")
    ax2 = ax1.twinx()
    ax2.plot(centers, abs_err, "s-", color="#2c3e50", label="mean abs error (m)")
    ax2.set_ylabel("mean abs error (m)", color="#2c3e50")
    for c, n in zip(centers, counts):
        if n == 0:
            ax1.axvspan(c - 1, c + 1, color="#eeeeee")
    ax1.set_title("Depth error vs distance")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def sample_grid(samples: list[dict[str, Any]], path: Path, max_depth: float = 80.0) -> Path:
    """Rows of: image | GT semantic | predicted semantic | GT depth | predicted depth | depth error."""
    plt = _plt()
    cols = ["image", "GT semantic", "prediction", "GT depth", "predicted depth", "AbsRel error"]
    fig, axes = plt.subplots(len(samples), len(cols), figsize=(3.2 * len(cols), 1.9 * len(samples)), squeeze=False)
    for r, s in enumerate(samples):
        gt_sem = colorize_labels(s["gt_labels"]) if s.get("gt_labels") is not None else None
        gt_dep = colorize_depth(s["gt_depth"], max_depth) if s.get("gt_depth") is not None else None
        err = error_map(s["depth"], s["gt_depth"]) if s.get("gt_depth") is not None else None
        tiles = [s["image"], gt_sem, colorize_labels(s["labels"]), gt_dep, colorize_depth(s["depth"], max_depth), err]
        for c, tile in enumerate(tiles):
            ax = axes[r][c]
            ax.axis("off")
            if tile is None:
                ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=8)
            else:
                ax.imshow(tile)
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=90)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_report(
    out_dir: str | Path, results: dict[str, Any], samples: list[dict[str, Any]], class_names: list[str], title: str
) -> Path:
    """Write ``report.md``, ``metrics.json`` and the PNGs into ``out_dir``; returns report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    meta = results.get("meta", {})
    if meta:
        lines += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in meta.items()] + [""]
    seg = results.get("semseg")
    if seg:
        lines += ["## Semantic segmentation", "", "| metric | value |", "|---|---|"]
        for key in ("miou_all", "miou_present", "pixel_acc", "mean_acc"):
            if key in seg:
                lines.append(f"| {key} | {100 * seg[key]:.2f} % |")
        lines += [
            "",
            "`miou_all`: the papers' convention (mean over all classes, absent ones count 0); "
            "`miou_present`: mean over classes present in the ground truth.",
            "",
        ]
        plot_class_iou(seg["per_class_iou"], class_names, out / "class_iou.png")
        plot_confusion(np.asarray(seg["confusion"]), class_names, out / "confusion.png")
        lines += ["![per-class IoU](class_iou.png)", "", "![confusion matrix](confusion.png)", ""]
    dep = results.get("depth")
    if dep:
        lines += ["## Depth", "", "| metric | value |", "|---|---|"]
        for key in ("rmse", "rmse_log", "abs_rel", "sq_rel", "mae", "silog", "delta1", "delta2", "delta3", "n_valid"):
            if key in dep:
                lines.append(f"| {key} | {_fmt(dep[key])} |")
        lines.append("")
        if dep.get("bin_edges"):
            plot_depth_vs_distance(
                dep["bin_edges"],
                dep["bin_abs_rel"],
                dep["bin_abs_err"],
                dep["bin_count"],
                out / "depth_vs_distance.png",
            )
            lines += ["![depth error vs distance](depth_vs_distance.png)", ""]
    for key, value in results.items():
        if key not in ("semseg", "depth", "meta") and isinstance(value, dict):
            lines += [f"## {key}", "", "```json", json.dumps(value, indent=2, default=float), "```", ""]
    if samples:
        sample_grid(samples, out / "samples.png")
        lines += ["## Samples", "", "![samples](samples.png)", ""]
    atomic_write_json(out / "metrics.json", results, indent=2, default=_json_default)
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines))  # last: a report.md means the report is complete
    return report


def _json_default(o: Any):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)
