"""Scoring on the real frames of ``../shared/realdata`` (issue 11, item 5), through the node's pipeline.

What is measured, and how it is aggregated (the issue's table):

* **Cityscapes**: one confusion matrix pooled over every pixel of the labelled Cityscapes frames
  (``cityscapes/`` frankfurt + ``cityscapes_full/`` aachen and bochum); mIoU over the classes present
  in their GT and pixel accuracy.
* **CamVid**: the 19 Cityscapes predictions are mapped INTO CamVid's 11 SegNet ids
  (:data:`CITYSCAPES_TO_CAMVID`, as the realdata README says); one confusion pooled over the 2
  frames; mIoU over the 8 one-to-one classes (:data:`CAMVID_ONE_TO_ONE`) present in the GT, and
  over all 11. The README maps terrain to *ignore*: pixels predicted as terrain (CamVid has no
  such class) are left out of the score, like void GT pixels; ``miou_8_terrain_as_miss`` is the
  stricter reading (they count as misses of the GT class) and ``ignored_pixels`` says how many.
* **Depth** vs LiDAR / stereo (kitti, nuscenes, tri_ddad x3, kitti_raw_0023_sequence x7,
  cityscapes_full hamburg = 13 frames): per frame AbsRel and delta<1.25 on valid GT pixels
  (0 < gt < ``max_depth``, 80 m), raw metric and after per-frame median scaling
  (pred * median(gt) / median(pred) on those pixels); the headline is the **mean over frames**
  (each frame weighs the same, as in the issue's baseline); per-set means and the pixel-pooled
  figures are reported beside it. A NaN prediction counts as 0 m (a miss), as in ``eval``.

Inference is ``pipeline.FramePipeline(engine).process(rgb, K=K)``: the ROS node's exact path
(letterbox or stretch as the model says; canonical depth -> metres with the frame's K; CamVid and
frames without intrinsics get K=None, i.e. the model's default field of view).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtl_perception.atomic_io import atomic_write_json, atomic_write_text
from mtl_perception.data.cityscapes_classes import CITYSCAPES_CLASSES
from mtl_perception.evaluate.calibration import CalibrationMeter
from mtl_perception.evaluate.metrics import DepthMeter, SegMeter, miou_over, scored_depth
from mtl_perception.evaluate.uncertainty import CoverageMeter

if TYPE_CHECKING:
    from mtl_perception.pipeline import PipelineOptions

CAMVID_CLASSES: tuple[str, ...] = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
#: CamVid classes with a one-to-one Cityscapes counterpart (building also takes wall): Sky, Building,
#: Pole, Road, Pavement, Tree, Fence, Pedestrian. SignSymbol, Car and Bicyclist are merged groups.
CAMVID_ONE_TO_ONE: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 7, 9)

# Cityscapes train id -> CamVid id (realdata README); 255 = no CamVid class (terrain, ignore)
_CS_TO_CAMVID = {
    0: 3,  # road -> Road
    1: 4,  # sidewalk -> Pavement
    2: 1,  # building -> Building
    3: 1,  # wall -> Building
    4: 7,  # fence -> Fence
    5: 2,  # pole -> Pole
    6: 6,  # traffic light -> SignSymbol
    7: 6,  # traffic sign -> SignSymbol
    8: 5,  # vegetation -> Tree
    10: 0,  # sky -> Sky
    11: 9,  # person -> Pedestrian
    12: 10,  # rider -> Bicyclist
    13: 8,  # car -> Car
    14: 8,  # truck -> Car
    15: 8,  # bus -> Car
    16: 8,  # train -> Car
    17: 10,  # motorcycle -> Bicyclist
    18: 10,  # bicycle -> Bicyclist
}
CITYSCAPES_TO_CAMVID: np.ndarray = np.full(256, 255, np.uint8)
for _cs, _cv in _CS_TO_CAMVID.items():
    CITYSCAPES_TO_CAMVID[_cs] = _cv
CITYSCAPES_TO_CAMVID.setflags(write=False)

#: CamVid id -> Cityscapes train id, only to draw CamVid GT in the Cityscapes colours
CAMVID_TO_CITYSCAPES_DISPLAY: np.ndarray = np.full(256, 255, np.uint8)
for _cv, _cs in {0: 10, 1: 2, 2: 5, 3: 0, 4: 1, 5: 8, 6: 7, 7: 4, 8: 13, 9: 11, 10: 18}.items():
    CAMVID_TO_CITYSCAPES_DISPLAY[_cv] = _cs
CAMVID_TO_CITYSCAPES_DISPLAY.setflags(write=False)


def cityscapes_to_camvid(labels: np.ndarray) -> np.ndarray:
    """Cityscapes train ids (uint8, 255 unknown) -> CamVid ids (255 where CamVid has no class)."""
    return CITYSCAPES_TO_CAMVID[np.asarray(labels, np.uint8)]


# ---------------------------------------------------------------------- depth per frame
def median_scale(pred: np.ndarray, gt: np.ndarray, max_depth: float = 80.0, min_depth: float = 1e-3) -> float:
    """median(gt) / median(pred) over valid GT pixels with a positive finite prediction (NaN if none)."""
    g = np.asarray(gt, np.float64)
    p = np.asarray(pred, np.float64)
    valid = np.isfinite(g) & (g > min_depth) & (g < max_depth) & np.isfinite(p) & (p > 0)
    if not valid.any():
        return float("nan")
    return float(np.median(g[valid]) / np.median(p[valid]))


def frame_depth_metrics(pred: np.ndarray, gt: np.ndarray, max_depth: float = 80.0) -> dict[str, float]:
    """AbsRel / delta<1.25 / RMSE of one frame, raw and median-scaled, on GT in (0, max_depth).

    ``pred`` NaN (the pipeline's invalid) counts as 0 m and +inf (sky) as ``max_depth``, as ``eval`` and
    ``replay-eval`` do."""
    pred = scored_depth(pred)
    raw = DepthMeter(max_depth=max_depth)
    raw.update(pred, gt)
    r = raw.compute()
    scale = median_scale(pred, gt, max_depth)
    scaled = DepthMeter(max_depth=max_depth)
    if math.isfinite(scale):
        scaled.update(pred * np.float32(scale), gt)
    s = scaled.compute()
    return {
        "n_valid": int(r["n_valid"]),
        "abs_rel": r["abs_rel"],
        "delta1": r["delta1"],
        "rmse": r["rmse"],
        "median_scale": scale,
        "abs_rel_median_scaled": s["abs_rel"],
        "delta1_median_scaled": s["delta1"],
    }


DEPTH_KEYS = ("abs_rel", "delta1", "abs_rel_median_scaled", "delta1_median_scaled")


def _mean(values: Iterable[float]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


class DepthByClassMeter:
    """Depth error pooled over GT pixels (0 < gt < max_depth) by the class the network *predicted* there:
    where the depth error comes from (e.g. real hedges behind parked cars called building and put at a
    building's distance). Per class: pixels, AbsRel and the geometric-mean ratio prediction / GT."""

    def __init__(self, n_classes: int, max_depth: float = 80.0, min_depth: float = 1e-3) -> None:
        self.max_depth, self.min_depth = max_depth, min_depth
        self.n = np.zeros(n_classes, np.int64)
        self.abs_rel = np.zeros(n_classes, np.float64)
        self.log_ratio = np.zeros(n_classes, np.float64)

    def update(self, pred: np.ndarray, gt: np.ndarray, labels: np.ndarray) -> None:
        """``pred`` as :func:`scored_depth` gives it (+inf counts as ``max_depth``), ``labels`` train ids."""
        g = np.asarray(gt, np.float64)
        valid = np.isfinite(g) & (g > self.min_depth) & (g < self.max_depth)
        lab = np.asarray(labels)[valid].astype(np.int64)
        keep = lab < len(self.n)
        g, lab = g[valid][keep], lab[keep]
        p = np.asarray(pred, np.float64)[valid][keep]
        p = np.maximum(np.where(np.isfinite(p), p, self.max_depth), 1e-9)
        k = len(self.n)
        self.n += np.bincount(lab, minlength=k)
        self.abs_rel += np.bincount(lab, np.abs(p - g) / g, minlength=k)
        self.log_ratio += np.bincount(lab, np.log(p / g), minlength=k)

    @classmethod
    def pooled(cls, meters: Iterable[DepthByClassMeter], n_classes: int) -> DepthByClassMeter:
        """One meter holding the pixels of all ``meters`` (the sums add)."""
        out = cls(n_classes)
        for m in meters:
            out.n += m.n
            out.abs_rel += m.abs_rel
            out.log_ratio += m.log_ratio
        return out

    def compute(self, names: Sequence[str]) -> dict[str, dict[str, float]]:
        total = max(int(self.n.sum()), 1)
        return {
            names[c]: {
                "pixels": int(self.n[c]),
                "share": float(self.n[c] / total),
                "abs_rel": float(self.abs_rel[c] / self.n[c]),
                "ratio": float(math.exp(self.log_ratio[c] / self.n[c])),
            }
            for c in np.flatnonzero(self.n)
        }


# ---------------------------------------------------------------------- scorer
@dataclass
class RealDataScorer:
    """Accumulates predictions of real frames; :meth:`compute` gives the issue's table."""

    max_depth: float = 80.0
    cityscapes: SegMeter = field(default_factory=lambda: SegMeter(len(CITYSCAPES_CLASSES)))
    camvid: SegMeter = field(default_factory=lambda: SegMeter(len(CAMVID_CLASSES)))
    camvid_strict: SegMeter = field(default_factory=lambda: SegMeter(len(CAMVID_CLASSES)))
    camvid_ignored: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    n_cityscapes: int = 0
    n_camvid: int = 0

    def __post_init__(self) -> None:
        self.pooled_depth = DepthMeter(max_depth=self.max_depth)
        # depth error by predicted class, per set (the pooled figures are their sum)
        self.depth_by_class_per_set: dict[str, DepthByClassMeter] = {}
        # ECE of the semantic confidence per label space; a pixel is correct in the space of its GT
        self.calibration = {"cityscapes": CalibrationMeter(), "camvid": CalibrationMeter()}
        # depth interval coverage (models with the uncertainty head), pooled and per set
        self.coverage = CoverageMeter(max_depth=self.max_depth)
        self.coverage_per_set: dict[str, CoverageMeter] = {}
        # each frame's own confusion (None: no labels), aligned with ``frames``: for evaluate/paired.py
        self.frame_seg: list[SegMeter | None] = []

    def add(
        self,
        sample: dict[str, Any],
        labels: np.ndarray,
        depth: np.ndarray,
        confidence: np.ndarray | None = None,
        depth_uncertainty: np.ndarray | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Score one frame (predictions at the frame's size, Cityscapes train ids and metres;
        ``confidence``: the semantic confidence at the same size, for the ECE)."""
        rec: dict[str, Any] = {"set": sample["set"], "name": sample["name"], "has_K": sample.get("K") is not None}
        rec.update(extra)
        one: SegMeter | None = None
        gt_sem, gt_dep = sample.get("semseg"), sample.get("depth")
        space = sample.get("label_space")
        if gt_sem is not None and space == "cityscapes":
            self.cityscapes.update(labels, gt_sem)
            if confidence is not None:
                self.calibration["cityscapes"].update(confidence, labels, gt_sem)
            one = SegMeter(len(CITYSCAPES_CLASSES))
            one.update(labels, gt_sem)
            r = one.compute()
            rec["semseg"] = {"label_space": space, "miou": r["miou_present"], "pixel_acc": r["pixel_acc"]}
            self.n_cityscapes += 1
        elif gt_sem is not None and space == "camvid":
            mapped = cityscapes_to_camvid(labels)
            self.camvid_strict.update(mapped, gt_sem)  # unmapped predictions = misses
            unmapped = mapped == 255  # terrain: the README's "ignore", left out like void GT
            gt_kept = np.where(unmapped, np.uint8(255), gt_sem)
            self.camvid_ignored += int((unmapped & (gt_sem != 255)).sum())
            self.camvid.update(mapped, gt_kept)
            if confidence is not None:  # correct = the mapped prediction is the CamVid GT; terrain ignored
                self.calibration["camvid"].update(confidence, mapped, gt_kept)
            one = SegMeter(len(CAMVID_CLASSES))
            one.update(mapped, gt_kept)
            r = one.compute()
            rec["semseg"] = {
                "label_space": space,
                "miou": miou_over(r, CAMVID_ONE_TO_ONE),
                "miou_11": r["miou_present"],
                "pixel_acc": r["pixel_acc"],
            }
            self.n_camvid += 1
        elif gt_sem is not None:
            raise ValueError(f"frame {sample['name']}: unknown label_space {space!r}")
        if gt_dep is not None:
            rec["depth"] = frame_depth_metrics(depth, gt_dep, self.max_depth)
            scored = scored_depth(depth)
            self.pooled_depth.update(scored, gt_dep)
            if labels is not None:
                per_set = self.depth_by_class_per_set.setdefault(
                    sample["set"], DepthByClassMeter(len(CITYSCAPES_CLASSES), max_depth=self.max_depth)
                )
                per_set.update(scored, gt_dep, labels)
            if depth_uncertainty is not None:
                self.coverage.update(depth, depth_uncertainty, gt_dep)
                per = self.coverage_per_set.setdefault(sample["set"], CoverageMeter(max_depth=self.max_depth))
                per.update(depth, depth_uncertainty, gt_dep)
        self.frames.append(rec)
        self.frame_seg.append(one)
        return rec

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.n_cityscapes:
            r = self.cityscapes.compute()
            out["cityscapes"] = {
                "frames": self.n_cityscapes,
                "aggregation": "pooled confusion over all pixels; mIoU over classes present in the GT",
                "miou": r["miou_present"],
                "pixel_acc": r["pixel_acc"],
                "miou_all_19": r["miou_all"],
                "classes_present": [CITYSCAPES_CLASSES[i] for i, n in enumerate(r["gt_pixels"]) if n > 0],
                "per_class_iou": _named(r, CITYSCAPES_CLASSES),
                **_per_class_extras(r, CITYSCAPES_CLASSES),
                "confusion": r["confusion"].tolist(),
            }
        if self.n_camvid:
            r = self.camvid.compute()
            out["camvid"] = {
                "frames": self.n_camvid,
                "aggregation": "Cityscapes predictions mapped into CamVid ids (terrain ignored); pooled "
                "confusion; mIoU over classes present in the GT",
                "miou_8": miou_over(r, CAMVID_ONE_TO_ONE),
                "miou_11": r["miou_present"],
                "pixel_acc": r["pixel_acc"],
                "ignored_pixels": self.camvid_ignored,
                "miou_8_terrain_as_miss": miou_over(self.camvid_strict.compute(), CAMVID_ONE_TO_ONE),
                "classes_8": [CAMVID_CLASSES[i] for i in CAMVID_ONE_TO_ONE],
                "classes_8_present": [CAMVID_CLASSES[i] for i in CAMVID_ONE_TO_ONE if r["gt_pixels"][i] > 0],
                "per_class_iou": _named(r, CAMVID_CLASSES),
                **_per_class_extras(r, CAMVID_CLASSES),
                "confusion": r["confusion"].tolist(),
            }
        meters = {k: m for k, m in self.calibration.items() if m.count.sum()}
        if meters:
            pooled = CalibrationMeter()
            for m in meters.values():
                pooled.merge(m)
            out["calibration"] = {
                "aggregation": "ECE of the semantic confidence, 15 equal-width bins, pooled over labelled pixels "
                "(CamVid: correct = prediction mapped into CamVid ids equals the GT)",
                "all": pooled.compute(),
                **{k: m.compute() for k, m in meters.items()},
            }
        depth_frames = [f for f in self.frames if "depth" in f]
        if depth_frames:
            per_set: dict[str, dict[str, Any]] = {}
            for f in depth_frames:
                per_set.setdefault(f["set"], {"frames": 0, "_recs": []})
                per_set[f["set"]]["frames"] += 1
                per_set[f["set"]]["_recs"].append(f["depth"])
            for s in per_set.values():
                recs = s.pop("_recs")
                s.update({k: _mean(r[k] for r in recs) for k in DEPTH_KEYS})
            pooled = self.pooled_depth.compute()
            out["depth"] = {
                "frames": len(depth_frames),
                "aggregation": "per-frame metrics on valid GT pixels (0 < gt < max_depth), mean over frames",
                "max_depth": self.max_depth,
                **{k: _mean(f["depth"][k] for f in depth_frames) for k in DEPTH_KEYS},
                "per_set_mean": {k: _mean(s[k] for s in per_set.values()) for k in DEPTH_KEYS},
                "per_set": per_set,
                "pixel_pooled": {k: pooled[k] for k in ("abs_rel", "delta1", "rmse", "n_valid")},
                "by_predicted_class": DepthByClassMeter.pooled(
                    self.depth_by_class_per_set.values(), len(CITYSCAPES_CLASSES)
                ).compute(CITYSCAPES_CLASSES),
                # the pooled figures are mostly the stereo frame's (most of the valid pixels); per set too
                "by_predicted_class_per_set": {
                    k: m.compute(CITYSCAPES_CLASSES) for k, m in sorted(self.depth_by_class_per_set.items())
                },
            }
        if self.coverage.sums["n"]:
            out["depth_uncertainty"] = {
                "aggregation": "pixels pooled over frames (0 < gt < max_depth)",
                **self.coverage.compute(),
                "per_set": {k: m.compute() for k, m in sorted(self.coverage_per_set.items())},
            }
        out["frames"] = self.frames
        return out


def _named(r: dict[str, Any], names: Sequence[str], key: str = "per_class_iou") -> dict[str, float | None]:
    """A per-class list of ``r`` by class name; None where undefined (e.g. IoU of a class absent from
    both GT and prediction, recall of a class absent from the GT)."""
    return {n: (None if not math.isfinite(v) else v) for n, v in zip(names, r[key])}


def _per_class_extras(r: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Recall, precision and pixel counts (GT, predicted) per class: why an IoU is low."""
    return {
        "per_class_recall": _named(r, names, "per_class_recall"),
        "per_class_precision": _named(r, names, "per_class_precision"),
        "pixels": {n: {"gt": g, "predicted": p} for n, g, p in zip(names, r["gt_pixels"], r["pred_pixels"])},
    }


# ---------------------------------------------------------------------- running models
@dataclass
class ModelRun:
    """One model over the real frames: its scorer, pipeline and inference time."""

    label: str
    engine: Any
    scorer: RealDataScorer
    pipeline: Any = None
    seconds: float = 0.0


def run_realdata(
    models: Sequence[tuple[str, Any] | tuple[str, Any, PipelineOptions | None]],
    samples: Iterable[dict[str, Any]],
    max_depth: float = 80.0,
    on_frame: Callable[[dict[str, Any], list[Any]], None] | None = None,
    progress: Callable[[int], None] | None = None,
    camera_height: bool = True,
    options: PipelineOptions | None = None,
) -> list[ModelRun]:
    """Run every ``(label, engine)`` over ``samples`` through ``FramePipeline.process(rgb, K=K)``.

    Each frame is read once and given to every model; ``on_frame(sample, [FrameResult per model])``
    sees the products (e.g. to draw the picture grid) before they are dropped. ``camera_height``: give
    the pipeline each frame's known camera height (``sample["camera_height"]``, the node's
    ``camera_height``), which rescales depth to the fitted road plane; False: the network's metric depth
    from the intrinsics alone. ``options``: the pipeline's options (default: the node's); a model given
    as ``(label, engine, options)`` runs with its own (one model under two option sets, paired)."""
    from mtl_perception.pipeline import FramePipeline

    runs = [
        ModelRun(
            label,
            engine,
            RealDataScorer(max_depth),
            FramePipeline.from_options(engine, own[0] if own else options),
        )
        for label, engine, *own in models
    ]
    for sample in samples:
        results = []
        for run in runs:
            t0 = time.perf_counter()
            height = sample.get("camera_height") if camera_height else None
            res = run.pipeline.process(
                sample["image"], K=sample.get("K"), confidence=True, depth_uncertainty=True, camera_height=height
            )
            run.seconds += time.perf_counter() - t0
            g = res.ground_scale
            fit = None
            if g is not None:
                fit = {
                    "camera_height": height,
                    "height_source": sample.get("height_source"),
                    "factor": g.factor,
                    "fitted_height": g.fitted_height if math.isfinite(g.fitted_height) else None,
                    "inliers": g.inliers,
                    "applied": g.applied,
                    "reason": g.reason,
                }
            run.scorer.add(
                sample,
                res.labels,
                res.depth,
                res.confidence,
                res.depth_uncertainty,
                intrinsics_source=res.intrinsics_source,
                depth_scale=res.depth_scale,
                **({} if fit is None else {"ground_plane": fit}),
            )
            results.append(res)
        if on_frame is not None:
            on_frame(sample, results)
        if progress is not None:
            progress(1)
    return runs


# ---------------------------------------------------------------------- tables
def _pct(x: Any) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def _num(x: Any, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def summary_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows of the issue's table for one model's ``RealDataScorer.compute()``."""
    cs, cv, dp, cal = res.get("cityscapes"), res.get("camvid"), res.get("depth"), res.get("calibration")
    rows: list[tuple[str, str]] = []
    if cs:
        n = cs["frames"]
        rows.append((f"Cityscapes mIoU, pooled over {n} frames (classes in GT)", _pct(cs["miou"])))
        rows.append((f"Cityscapes pixel accuracy, pooled over {n} frames", _pct(cs["pixel_acc"])))
    if cv:
        n = cv["frames"]
        rows.append((f"CamVid mIoU, 8 one-to-one classes, pooled over {n} frames", _pct(cv["miou_8"])))
        rows.append((f"CamVid mIoU, 11 classes, pooled over {n} frames", _pct(cv["miou_11"])))
    if cal:
        for key, name in (("cityscapes", "Cityscapes"), ("camvid", "CamVid")):
            if key in cal:
                rows.append((f"Semantic confidence ECE (15 bins), {name} pixels", _pct(cal[key]["ece"])))
        a = cal["all"]
        rows.append(("Semantic confidence ECE (15 bins), all labelled pixels pooled", _pct(a["ece"])))
        rows.append(
            ("Mean confidence / pixel accuracy, same pixels", f"{_pct(a['mean_confidence'])} / {_pct(a['accuracy'])}")
        )
    if dp:
        n = dp["frames"]
        rows.append((f"Depth AbsRel, metric (mean of {n} frames)", _num(dp["abs_rel"])))
        rows.append((f"Depth delta<1.25, metric (mean of {n} frames)", _num(dp["delta1"], 2)))
        rows.append(("Depth AbsRel, median-scaled per frame", _num(dp["abs_rel_median_scaled"])))
        rows.append(("Depth delta<1.25, median-scaled per frame", _num(dp["delta1_median_scaled"], 2)))
    cov = res.get("depth_uncertainty")
    if cov:
        rows.append(
            ("Depth GT inside the 1-sigma interval (Gaussian on log depth; ideal 68.3 %)", _pct(cov["within_1sigma"]))
        )
        rows.append(("Depth GT inside the 2-sigma interval (ideal 95.4 %)", _pct(cov["within_2sigma"])))
        rows.append(
            (
                "Mean predicted sigma of log depth / half width (m)",
                f"{_num(cov['mean_sigma_log'])} / {_num(cov['mean_uncertainty_m'], 2)}",
            )
        )
    return rows


def _depth_cells(v: dict[str, Any]) -> str:
    return " / ".join(_num(v.get(k, float("nan")), 3 if "abs" in k else 2) for k in DEPTH_KEYS)


def format_tables(results: dict[str, dict[str, Any]], per_frame: bool = False) -> str:
    """Markdown tables: the summary (one column per model), depth per set, optionally per frame."""
    labels = list(results)
    lines = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    rows = {lab: dict(summary_rows(r)) for lab, r in results.items()}
    # every model's rows, first-seen order (a model with the uncertainty head adds coverage rows)
    metrics = list(dict.fromkeys(m for lab in labels for m in rows[lab]))
    for metric in metrics:
        lines.append(f"| {metric} | " + " | ".join(rows[lab].get(metric, "-") for lab in labels) + " |")
    first = results[labels[0]].get("depth")
    if first:
        lines += [
            "",
            "| depth set | frames | "
            + " | ".join(f"{lab}: AbsRel / d1 / AbsRel med / d1 med" for lab in labels)
            + " |",
            "|---|---|" + "---|" * len(labels),
        ]
        for s in first["per_set"]:
            cells = [_depth_cells(results[lab]["depth"]["per_set"][s]) for lab in labels]
            lines.append(f"| {s} | {first['per_set'][s]['frames']} | " + " | ".join(cells) + " |")
        n_sets, n = len(first["per_set"]), first["frames"]
        cells = [_depth_cells(results[lab]["depth"]["per_set_mean"]) for lab in labels]
        lines.append(f"| mean of the {n_sets} set means | {n} | " + " | ".join(cells) + " |")
        cells = [_depth_cells(results[lab]["depth"]["pixel_pooled"]) for lab in labels]
        lines.append(f"| all pixels pooled (no scaling) | {n} | " + " | ".join(cells) + " |")
    if per_frame:
        lines += [
            "",
            "| frame | K | "
            + " | ".join(f"{lab}: mIoU / acc or AbsRel / d1 / med AbsRel / med d1" for lab in labels)
            + " |",
            "|---|---|" + "---|" * len(labels),
        ]
        frames = results[labels[0]]["frames"]
        for i, f in enumerate(frames):
            cells = []
            for lab in labels:
                rec = results[lab]["frames"][i]
                parts = []
                if "semseg" in rec:
                    parts.append(f"{_pct(rec['semseg']['miou'])} / {_pct(rec['semseg']['pixel_acc'])}")
                if "depth" in rec:
                    parts.append(_depth_cells(rec["depth"]))
                cells.append("; ".join(parts) or "-")
            k = "yes" if f["has_K"] else "no"
            lines.append(f"| {f['set']}/{f['name']} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- report
NOTES = (
    "Cityscapes: one confusion matrix pooled over every pixel of the labelled Cityscapes frames; mIoU over "
    "the classes present in their GT. CamVid: Cityscapes predictions mapped into CamVid ids (road->Road, "
    "sidewalk->Pavement, building+wall->Building, pole->Pole, light+sign->SignSymbol, fence->Fence, "
    "vegetation->Tree, sky->Sky, person->Pedestrian, rider/motorcycle/bicycle->Bicyclist, "
    "car/truck/bus/train->Car, terrain ignored); 8-class mIoU over Sky, Building, Pole, Road, Pavement, "
    "Tree, Fence, Pedestrian where present in the GT. Depth: per frame on GT pixels in (0, max_depth) "
    "(sparse LiDAR: only returns; Cityscapes stereo: bottom 22 % bonnet masked), raw metric and after "
    "median scaling per frame; the headline is the mean over frames, per-set means and pixel-pooled "
    "figures beside it. Inference: pipeline.FramePipeline.process(rgb, K) with each frame's intrinsics "
    "(none for CamVid, Cityscapes frankfurt and bochum)."
)


def write_realdata_report(
    out_dir: str | Path,
    results: dict[str, dict[str, Any]],
    meta: dict[str, Any],
    grid_name: str | None = "grid.png",
    paired: dict[str, Any] | None = None,
) -> Path:
    """``report.md`` and ``metrics.json`` into ``out_dir`` (the grid PNG is written by the caller).
    ``paired``: the two models' paired bootstrap (evaluate/paired.py, with ``new`` / ``old`` labels)."""

    from mtl_perception.evaluate.report import _json_default

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Real frames: issue 11 evaluation", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in meta.items() if not isinstance(v, dict)]
    for label, m in meta.get("models", {}).items():
        lines.append(f"| model `{label}` | " + ", ".join(f"{k}: {v}" for k, v in m.items()) + " |")
    lines += ["", "## Summary", "", format_tables(results), "", NOTES, ""]
    if paired:
        from mtl_perception.evaluate.paired import format_paired

        lines += ["## How sure: new vs old", "", format_paired(paired, paired["new"], paired["old"]), ""]
    lines += ["## Per frame", "", format_tables(results, per_frame=True).split("\n\n")[-1], ""]
    for key, names, title in (
        ("cityscapes", CITYSCAPES_CLASSES, "Cityscapes per class (pooled)"),
        ("camvid", CAMVID_CLASSES, "CamVid per class (pooled)"),
    ):
        if key not in results[next(iter(results))]:
            continue
        lines += [
            f"## {title}",
            "",
            "IoU, then recall / precision and the pixels predicted as the class (the ground truth has the "
            "first column's count): a low IoU with high recall and many predicted pixels is a class called "
            "where it is not.",
            "",
            "| class | GT pixels | "
            + " | ".join(f"{lab}: IoU (recall / precision, predicted)" for lab in results)
            + " |",
            "|---|---|" + "---|" * len(results),
        ]
        for n in names:
            gt_px = results[next(iter(results))][key].get("pixels", {}).get(n, {}).get("gt")
            cells = []
            for lab in results:
                r = results[lab][key]
                px = r.get("pixels", {}).get(n, {}).get("predicted")
                cells.append(
                    f"{_pct(r['per_class_iou'].get(n))} ({_pct(r.get('per_class_recall', {}).get(n))} / "
                    f"{_pct(r.get('per_class_precision', {}).get(n))}, {px if px is not None else '-'})"
                )
            lines.append(f"| {n} | {gt_px if gt_px is not None else '-'} | " + " | ".join(cells) + " |")
        lines.append("")
    depth = {lab: r.get("depth", {}) for lab, r in results.items()}
    first_model = next(iter(results))
    # pooled (mostly the stereo frame's pixels), then per set, where a set's own pattern shows
    pooled = {lab: d.get("by_predicted_class", {}) for lab, d in depth.items()}
    views = [("pixels pooled over the depth frames", pooled)]
    for set_name in depth[first_model].get("by_predicted_class_per_set", {}):
        per = {lab: d.get("by_predicted_class_per_set", {}).get(set_name, {}) for lab, d in depth.items()}
        views.append((set_name, per))
    for i, (title, by_model) in enumerate(views):
        first = by_model[first_model]
        if not first:
            continue
        if i == 0:
            lines += ["## Depth error by predicted class", ""]
        lines += [
            f"{title}:",
            "",
            "| class | " + " | ".join(f"{lab}: share / AbsRel / ratio pred:GT" for lab in results) + " |",
            "|---|" + "---|" * len(results),
        ]
        for n in sorted(first, key=lambda c: -first[c]["pixels"]):
            cells = []
            for lab in results:
                v = by_model[lab].get(n)
                cells.append("-" if v is None else f"{_pct(v['share'])} / {_num(v['abs_rel'])} / {_num(v['ratio'], 2)}")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    if grid_name:
        lines += ["## Frames", "", "input | per model: classes, depth | ground truth", ""]
        lines.append(f"![real frames]({grid_name})")
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    payload = {"meta": meta, "models": results, **({"paired": paired} if paired else {})}
    atomic_write_json(out / "metrics.json", payload, indent=2, default=_json_default)
    return report
