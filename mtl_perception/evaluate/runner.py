"""Evaluate an ``InferenceEngine`` on a dataset of sample dicts: the node's exact pipeline
(preprocess, engine, postprocess to the frame's resolution), then dataset-level metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from mtl_perception.deploy.postprocess import labels_from_logits, resize_depth, resize_labels
from mtl_perception.evaluate.calibration import CalibrationMeter
from mtl_perception.evaluate.metrics import DepthMeter, SegMeter, scored_depth
from mtl_perception.evaluate.uncertainty import CoverageMeter
from mtl_perception.pipeline import FramePipeline, PipelineOptions


def evaluate_engine(
    engine: Any,
    samples: Iterable[dict[str, Any]],
    num_classes: int = 19,
    max_depth: float = 80.0,
    keep_samples: int = 4,
    limit: int | None = None,
    progress: bool = False,
    camera_height: bool = True,
    options: PipelineOptions | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Returns (results, a few samples with predictions for the report). ``camera_height``: pass each
    sample's ``camera_height`` (rendered frames know theirs) to the pipeline's road-plane scale (the
    node's ``camera_height``); False: intrinsics alone. ``options``: the pipeline's depth options
    (default: the node's)."""
    seg, dep = SegMeter(num_classes), DepthMeter(max_depth=max_depth)
    calib = CalibrationMeter()  # ECE of the semantic confidence (the node's ~/semantic/confidence)
    coverage = CoverageMeter(max_depth=max_depth)  # depth interval coverage (the node's ~/depth/uncertainty)
    kept: list[dict[str, Any]] = []
    latencies: list[float] = []
    has_seg = has_depth = False
    total = limit or (len(samples) if hasattr(samples, "__len__") else None)
    stride = max(1, (total or keep_samples) // max(keep_samples, 1))  # spread report samples over the data
    tasks = ((getattr(engine, "info", None) and engine.info.extra.get("config")) or {}).get("tasks") or {}
    multitask = "semseg" in tasks and "depth" in tasks
    pipeline = (
        FramePipeline.from_options(engine, options, confidence=True, depth_uncertainty=True) if multitask else None
    )
    it = samples
    if progress:
        from tqdm import tqdm

        it = tqdm(samples, total=total, desc="eval", unit="frame")
    for i, sample in enumerate(it):
        if limit is not None and i >= limit:
            break
        image = sample["image"]
        t0 = time.perf_counter()
        if multitask:
            # the node's own path: letterbox, canonical depth -> metres with the frame's K
            height = sample.get("camera_height") if camera_height else None
            res = pipeline.process(image, K=sample.get("K"), camera_height=height)
            labels, depth, confidence = res.labels, res.depth, res.confidence
            uncertainty = res.depth_uncertainty
        else:  # a single-task model (Delta_m reference): score the task it has
            outputs = engine.infer(image)
            labels = (
                resize_labels(labels_from_logits(outputs["semseg"][0]), image.shape[:2])
                if "semseg" in outputs
                else None
            )
            depth = resize_depth(outputs["depth"][0, 0], image.shape[:2]) if "depth" in outputs else None
            confidence = uncertainty = None
        latencies.append((time.perf_counter() - t0) * 1000)
        gt_sem, gt_dep = sample.get("semseg"), sample.get("depth")
        if gt_sem is not None and labels is not None:
            seg.update(labels, gt_sem)
            has_seg = True
            if confidence is not None:
                calib.update(confidence, labels, gt_sem)
        if gt_dep is not None and depth is not None:
            dep.update(scored_depth(depth), gt_dep)
            has_depth = True
            if uncertainty is not None:
                coverage.update(depth, uncertainty, gt_dep)
        if len(kept) < keep_samples and i % stride == 0 and labels is not None and depth is not None:
            kept.append({"image": image, "labels": labels, "depth": depth, "gt_labels": gt_sem, "gt_depth": gt_dep})
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    results: dict[str, Any] = {
        "frames": len(latencies),
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)),
            "p90": float(np.percentile(lat, 90)),
            "p99": float(np.percentile(lat, 99)),
            "mean": float(lat.mean()),
        },
    }
    if has_seg:
        results["semseg"] = seg.compute()
    if calib.count.sum():
        results["calibration"] = {**calib.compute(), "temperature": pipeline.temperature}
    if has_depth:
        results["depth"] = dep.compute()
    if coverage.sums["n"]:
        results["depth_uncertainty"] = coverage.compute()
    return results, kept
