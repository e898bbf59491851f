"""Replay evaluation: the node's pipeline over a rosbag2 (offline) or over a live node's outputs.

:class:`ReplayAccumulator` is shared by ``mtl-perception replay-eval`` (offline, below) and the
live evaluator node (``mtl_perception.ros.evaluator``), so both write the same metrics and the
same report: the issue 2 metrics (``SegMeter`` / ``DepthMeter``, as ``eval``) where ground truth
is matched, per-frame latency per stage (p50/p90/p99), predicted class histograms, predicted
depth statistics, the errors met (partial runs say so), plots and sample PNGs
(input | semantic colour | depth | depth error or GT semantic).

Offline replay (:func:`replay_bag`) decodes each image with ``imaging.image_msg_to_rgb`` /
``compressed_msg_to_rgb`` and runs ``pipeline.FramePipeline.process``: the node's code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.atomic_io import atomic_imwrite, atomic_savefig, atomic_write_json, atomic_write_text
from mtl_perception.evaluate.metrics import DepthMeter, SegMeter, scored_depth
from mtl_perception.evaluate.uncertainty import CoverageMeter
from mtl_perception.imaging import frame_intrinsics  # the node's K policy, shared

STAGES = ("decode", "preprocess", "inference", "postprocess", "total")
#: how a frame got its K: CameraInfo matched by stamp, the topic's latest earlier one, either of them
#: rescaled to the image size; or no K (no CameraInfo, or an unusable one: default field of view)
INTRINSICS_WITH_K = ("camera_info", "camera_info_latest", "camera_info_scaled")
INTRINSICS_WITHOUT_K = ("no_camera_info", "invalid_camera_info")
DEPTH_HIST_EDGES = [0, 2, 5, 10, 20, 40, 80, 120, float("inf")]


class ReportDirError(ValueError):
    """The report directory exists and is not empty (pass --force or another directory)."""


def prepare_report_dir(path: str | Path, force: bool = False) -> Path:
    """Create ``path``; refuse a non-empty existing directory unless ``force`` (files are then replaced)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ReportDirError(f"--report {out} is a file; pass a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ReportDirError(
            f"--report {out} exists and is not empty; pass another directory or --force to replace its report files"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "max": float(a.max()),
        "n": int(a.size),
    }


@dataclass
class Sample:
    image: np.ndarray | None
    labels: np.ndarray
    depth: np.ndarray
    gt_labels: np.ndarray | None = None
    gt_depth: np.ndarray | None = None
    stamp_ns: int | None = None
    topic: str = ""
    index: int = 0


@dataclass
class ReplayAccumulator:
    """Metrics, latency, histograms, errors and samples of one replay; :meth:`write_report` at the end."""

    class_names: list[str]
    palette: list[list[int]] | None = None
    max_depth: float = 80.0
    keep_samples: int = 4
    sample_stride: int = 1
    seg: SegMeter = field(init=False)
    dep: DepthMeter = field(init=False)
    frames: int = 0
    gt_semantic_frames: int = 0
    gt_depth_frames: int = 0
    errors: list[str] = field(default_factory=list)
    error_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    per_topic: dict[str, int] = field(default_factory=dict)
    # frames per intrinsics status (offline replay: see ``frame_intrinsics``); empty when not tracked
    intrinsics: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.class_names)
        self.seg = SegMeter(n)
        self.dep = DepthMeter(max_depth=self.max_depth)
        # depth interval coverage of a model with the uncertainty head (frames with depth GT)
        self.cov = CoverageMeter(max_depth=self.max_depth)
        self.class_pixels = np.zeros(256, np.int64)
        self.depth_hist = np.zeros(len(DEPTH_HIST_EDGES) - 1, np.int64)
        self.depth_pixels = 0
        self.depth_valid = 0
        self.depth_beyond_range = 0  # +inf: sky (REP 117)
        self.depth_sum = 0.0
        self.depth_min = float("inf")
        self.depth_max = float("-inf")
        self.depth_medians: list[float] = []
        self.shapes: dict[str, int] = {}

    # ------------------------------------------------------------------ accumulation
    def add(
        self,
        labels: np.ndarray,
        depth: np.ndarray,
        image: np.ndarray | None = None,
        gt_labels: np.ndarray | None = None,
        gt_depth: np.ndarray | None = None,
        timings_ms: dict[str, float] | None = None,
        stamp_ns: int | None = None,
        topic: str = "",
        depth_uncertainty: np.ndarray | None = None,
    ) -> None:
        """One processed frame: predictions at the frame's resolution, optional ground truth
        (``depth_uncertainty``: ``FrameResult.depth_uncertainty``, scored against the depth GT)."""
        idx = self.frames
        self.frames += 1
        self.per_topic[topic] = self.per_topic.get(topic, 0) + 1
        key = f"{labels.shape[1]}x{labels.shape[0]}"
        self.shapes[key] = self.shapes.get(key, 0) + 1
        for k, v in (timings_ms or {}).items():
            self.latency.setdefault(k, []).append(float(v))
        self.class_pixels += np.bincount(labels.ravel(), minlength=256)[:256]
        d = depth[np.isfinite(depth) & (depth > 0)]
        self.depth_pixels += depth.size
        self.depth_valid += d.size
        self.depth_beyond_range += int(np.isposinf(depth).sum())
        if d.size:
            self.depth_sum += float(d.sum(dtype=np.float64))
            self.depth_min = min(self.depth_min, float(d.min()))
            self.depth_max = max(self.depth_max, float(d.max()))
            self.depth_medians.append(float(np.median(d)))
            self.depth_hist += np.histogram(d, bins=DEPTH_HIST_EDGES)[0]
        if gt_labels is not None:
            if gt_labels.shape != labels.shape:
                self.error("gt_shape", f"frame {idx}: semantic GT {gt_labels.shape} vs prediction {labels.shape}")
                gt_labels = None
            else:
                self.seg.update(labels, gt_labels)
                self.gt_semantic_frames += 1
        if gt_depth is not None:
            if gt_depth.shape != depth.shape:
                self.error("gt_shape", f"frame {idx}: depth GT {gt_depth.shape} vs prediction {depth.shape}")
                gt_depth = None
            else:
                self.dep.update(scored_depth(depth), gt_depth)
                self.gt_depth_frames += 1
                if depth_uncertainty is not None:
                    self.cov.update(depth, depth_uncertainty, gt_depth)
        if len(self.samples) < self.keep_samples and idx % max(1, self.sample_stride) == 0:
            self.samples.append(Sample(image, labels, depth, gt_labels, gt_depth, stamp_ns, topic, idx))

    def error(self, kind: str, message: str, keep: int = 50) -> None:
        """Count an error of ``kind``; the first ``keep`` messages are listed in the report."""
        self.error_counts[kind] = self.error_counts.get(kind, 0) + 1
        if len(self.errors) < keep:
            self.errors.append(message)

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # ------------------------------------------------------------------ results
    def results(self, meta: dict[str, Any] | None = None, status: str | None = None) -> dict[str, Any]:
        n_cls = len(self.class_names)
        total_px = int(self.class_pixels.sum())
        hist = {
            self.class_names[i] if i < n_cls else f"id_{i}": round(int(c) / total_px, 6)
            for i, c in enumerate(self.class_pixels)
            if c
        }
        depth_stats: dict[str, Any] = {
            "valid_fraction": self.depth_valid / self.depth_pixels if self.depth_pixels else 0,
            "beyond_range_fraction": self.depth_beyond_range / self.depth_pixels if self.depth_pixels else 0,
        }
        if self.depth_valid:
            depth_stats.update(
                {
                    "min": self.depth_min,
                    "max": self.depth_max,
                    "mean": self.depth_sum / self.depth_valid,
                    "median_of_frame_medians": float(np.median(self.depth_medians)),
                    "histogram_edges_m": DEPTH_HIST_EDGES[:-1] + ["inf"],
                    "histogram_fraction": (self.depth_hist / self.depth_valid).round(6).tolist(),
                }
            )
        if status is None:
            status = "ok" if not self.error_counts else "partial"
            if self.frames == 0:
                status = "failed"
        res: dict[str, Any] = {
            "status": status,
            "frames": self.frames,
            "frames_per_topic": self.per_topic,
            "resolutions": self.shapes,
            "latency_ms": {k: percentiles(v) for k, v in self.latency.items()},
            "class_histogram": hist,
            "depth_stats": depth_stats,
            "gt_frames": {"semantic": self.gt_semantic_frames, "depth": self.gt_depth_frames},
            "counters": self.counters,
            "error_counts": self.error_counts,
            "errors": self.errors,
            "warnings": self.warnings,
        }
        if self.intrinsics:
            with_k = sum(n for k, n in self.intrinsics.items() if k in INTRINSICS_WITH_K)
            res["intrinsics"] = {"frames_with_K": with_k, "frames_without_K": self.frames - with_k, **self.intrinsics}
        if self.gt_semantic_frames:
            res["semseg"] = self.seg.compute()
        if self.gt_depth_frames:
            res["depth"] = self.dep.compute()
        if self.cov.sums["n"]:
            res["depth_uncertainty"] = self.cov.compute()
        if meta:
            res["meta"] = meta
        return res

    # ------------------------------------------------------------------ report
    def write_report(self, out_dir: str | Path, title: str, results: dict[str, Any]) -> Path:
        """``report.md`` (+ plots, ``metrics.json``, ``samples/*.png``) into an existing ``out_dir``."""
        from mtl_perception.evaluate.report import _json_default, write_report

        out = Path(out_dir)
        core = {k: results[k] for k in ("meta", "semseg", "depth") if k in results}
        grid = [s.__dict__ for s in self.samples if s.image is not None]
        report = write_report(out, core, grid, list(self.class_names), title)
        lines = report.read_text().splitlines()
        lines += self._markdown(results, out)
        atomic_write_json(out / "metrics.json", results, indent=2, default=_json_default)
        atomic_write_text(report, "\n".join(lines) + "\n")  # last: a report.md means the report is complete
        return report

    def _markdown(self, r: dict[str, Any], out: Path) -> list[str]:
        lines = ["", "## Run", "", f"- status: **{r['status']}**", f"- frames processed: {r['frames']}"]
        for k, v in r.get("frames_per_topic", {}).items():
            lines.append(f"  - `{k}`: {v}")
        lines.append(f"- resolutions: {', '.join(f'{k} ({v})' for k, v in r.get('resolutions', {}).items()) or '-'}")
        gt = r.get("gt_frames", {})
        lines.append(
            f"- frames with matched ground truth: semantic {gt.get('semantic', 0)}, depth {gt.get('depth', 0)}"
        )
        intr = r.get("intrinsics")
        if intr:
            detail = ", ".join(f"{k} {v}" for k, v in intr.items() if k not in ("frames_with_K", "frames_without_K"))
            lines.append(
                f"- frames with camera intrinsics (K from CameraInfo, metric depth): {intr['frames_with_K']} of "
                f"{r['frames']} ({detail})"
            )
        if r.get("depth_uncertainty"):
            from mtl_perception.evaluate.uncertainty import format_coverage

            lines.append(f"- {format_coverage(r['depth_uncertainty'])}")
        if r["frames"] and not gt.get("semantic") and not gt.get("depth"):
            lines.append("- no ground truth matched: accuracy metrics are not available, only predictions' statistics")
        for k, v in r.get("counters", {}).items():
            lines.append(f"- {k}: {v}")
        lines.append("")
        if r.get("error_counts"):
            lines += ["## Errors", "", "| kind | count |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in r["error_counts"].items()]
            lines += ["", "First messages:", ""] + [f"- {e}" for e in r.get("errors", [])] + [""]
        if r.get("warnings"):
            lines += ["## Warnings", ""] + [f"- {w}" for w in r["warnings"]] + [""]
        lat = r.get("latency_ms", {})
        if lat:
            lines += [
                "## Latency per frame (ms)",
                "",
                "| stage | p50 | p90 | p99 | mean | max | n |",
                "|---|---|---|---|---|---|---|",
            ]
            for stage, p in lat.items():
                if p:
                    lines.append(
                        f"| {stage} | {p['p50']:.2f} | {p['p90']:.2f} | {p['p99']:.2f} | {p['mean']:.2f} | "
                        f"{p['max']:.2f} | {p['n']} |"
                    )
            if plot_latency(self.latency, out / "latency.png"):
                lines += ["", "![latency per frame](latency.png)"]
            lines.append("")
        if r.get("class_histogram"):
            lines += ["## Predicted classes (fraction of pixels)", "", "| class | fraction |", "|---|---|"]
            hist = sorted(r["class_histogram"].items(), key=lambda kv: -kv[1])
            lines += [f"| {k} | {100 * v:.2f} % |" for k, v in hist]
            plot_class_histogram(self.class_pixels, self.class_names, self.palette, out / "class_histogram.png")
            lines += ["", "![class histogram](class_histogram.png)", ""]
        ds = r.get("depth_stats", {})
        if ds and r["frames"]:
            lines += ["## Predicted depth", "", "| statistic | value |", "|---|---|"]
            for k in ("valid_fraction", "beyond_range_fraction", "min", "max", "mean", "median_of_frame_medians"):
                if k in ds:
                    lines.append(f"| {k} | {ds[k]:.4f} |")
            if "histogram_fraction" in ds:
                edges = ds["histogram_edges_m"]
                lines += ["", "| range (m) | fraction |", "|---|---|"]
                for i, f in enumerate(ds["histogram_fraction"]):
                    lines.append(f"| {edges[i]}-{edges[i + 1] if i + 1 < len(edges) else 'inf'} | {100 * f:.2f} % |")
            lines.append("")
        names = self.write_sample_pngs(out / "samples")
        if names:
            lines += ["## Sample frames", "", "input | semantic | depth | depth error (or GT semantic / blank)", ""]
            lines += [f"![{n}](samples/{n})" for n in names] + [""]
        return lines

    def write_sample_pngs(self, folder: Path, max_tile_width: int = 512) -> list[str]:
        """One PNG per kept sample: input | semantic colour | depth | error (or GT semantic)."""
        import cv2

        from mtl_perception.visualize import colorize_depth, colorize_labels, error_map

        if not self.samples:
            return []
        folder.mkdir(parents=True, exist_ok=True)
        palette = np.asarray(self.palette, np.uint8) if self.palette else None
        names = []
        for s in self.samples:
            h, w = s.labels.shape
            sem = colorize_labels(s.labels, palette) if palette is not None else colorize_labels(s.labels)
            tiles = [
                s.image if s.image is not None and s.image.shape[:2] == (h, w) else np.zeros((h, w, 3), np.uint8),
                sem,
                colorize_depth(s.depth, self.max_depth),
            ]
            if s.gt_depth is not None:
                tiles.append(error_map(s.depth, s.gt_depth))
            elif s.gt_labels is not None:
                tiles.append(
                    colorize_labels(s.gt_labels, palette) if palette is not None else colorize_labels(s.gt_labels)
                )
            else:
                tiles.append(np.zeros((h, w, 3), np.uint8))
            row = np.concatenate(tiles, axis=1)
            scale = min(1.0, max_tile_width / w)
            if scale < 1.0:  # keep PNGs small: tiles at most max_tile_width wide
                row = cv2.resize(row, (int(row.shape[1] * scale), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
            name = f"frame_{s.index:05d}.png"
            atomic_imwrite(folder / name, cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
            names.append(name)
        return names


def plot_latency(latency: dict[str, list[float]], path: Path) -> Path | None:
    from mtl_perception.evaluate.report import _plt

    series = {k: v for k, v in latency.items() if v}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for k, v in series.items():
        ax.plot(range(len(v)), v, lw=1, label=k)
    ax.set_xlabel("frame")
    ax.set_ylabel("ms")
    ax.set_title("Latency per frame and stage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path


def plot_class_histogram(pixels: np.ndarray, names: list[str], palette: Any, path: Path) -> Path:
    from mtl_perception.evaluate.report import _plt

    plt = _plt()
    n = len(names)
    total = max(int(pixels.sum()), 1)
    vals = [100 * pixels[i] / total for i in range(n)]
    colors = [np.asarray(palette[i]) / 255 for i in range(n)] if palette is not None else None
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(range(n), vals, color=colors, edgecolor="#333333", linewidth=0.5)
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("% of predicted pixels")
    ax.set_title("Predicted class histogram")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- offline replay
@dataclass
class ReplaySpec:
    """What to read from the bag."""

    image_topics: list[str]
    gt_semantic: str | None = None
    gt_depth: str | None = None
    tolerance_s: float = 0.005
    max_frames: int | None = None
    stamps: set[int] | None = None  # only frames with these header stamps (e.g. those a live run processed)
    # image topic -> its CameraInfo topic: K for the pipeline (canonical depth -> metres), as the node does
    camera_info: dict[str, str | None] = field(default_factory=dict)


def decode_image(msg: Any, msgtype: str) -> np.ndarray:
    """The node's conversion: Image or CompressedImage -> (H, W, 3) uint8 RGB (ImageDecodeError)."""
    from mtl_perception.imaging import compressed_msg_to_rgb, image_msg_to_rgb

    if msgtype.endswith("CompressedImage"):
        return compressed_msg_to_rgb(msg)
    return image_msg_to_rgb(msg)


def replay_bag(
    bag: Any,
    pipeline: Any,
    spec: ReplaySpec,
    acc: ReplayAccumulator,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Run ``pipeline`` over the bag's images, matching GT by header stamp, into ``acc``.

    Never raises for bad data: undecodable messages, broken images, GT of another size and storage
    failures are counted in ``acc`` (and listed in ``bag.errors``); the loop goes on or ends early
    with what it has. ``KeyboardInterrupt`` propagates after the frame in flight.
    """
    from mtl_perception.data.bags import MatchStats, gt_image_to_array, match_by_stamp
    from mtl_perception.imaging import ImageDecodeError

    gt_topics = [t for t in (spec.gt_semantic, spec.gt_depth) if t]
    info_topics = list(dict.fromkeys(t for t in spec.camera_info.values() if t and t not in gt_topics))
    secondary = gt_topics + info_topics
    topics = list(spec.image_topics) + secondary
    stats = MatchStats()
    stream = bag.messages(topics)
    tol = int(round(spec.tolerance_s * 1e9))
    latest_info: dict[str, Any] = {}  # per image topic: the last CameraInfo used (a camera's K rarely changes)
    for img, gts in match_by_stamp(stream, spec.image_topics, secondary, tol, stats=stats):
        if spec.max_frames is not None and acc.frames >= spec.max_frames:
            acc.count("frames_skipped_max_frames")
            continue
        if spec.stamps is not None and img.stamp_ns not in spec.stamps:
            continue
        if progress is not None:
            progress(1)
        if img.error is not None:
            acc.error("corrupt_message", img.error)
            continue
        t0 = time.perf_counter()
        try:
            rgb = decode_image(img.msg, img.msgtype)
        except ImageDecodeError as exc:
            acc.error("image_decode", f"{img.topic} frame at stamp {img.stamp_ns}: {exc}")
            continue
        decode_ms = 1e3 * (time.perf_counter() - t0)
        K, how = None, "no_camera_info"
        info_topic = spec.camera_info.get(img.topic)
        if info_topic:
            matched = gts.get(info_topic)
            info = matched.msg if matched is not None else latest_info.get(img.topic)
            K, how = frame_intrinsics(info, rgb.shape[:2])
            if K is not None:
                latest_info[img.topic] = info
                if matched is None and how == "camera_info":
                    how = "camera_info_latest"
        acc.intrinsics[how] = acc.intrinsics.get(how, 0) + 1
        gt_arrays: dict[str, np.ndarray | None] = {}
        for t in gt_topics:
            m = gts.get(t)
            if m is None:
                gt_arrays[t] = None
                continue
            try:
                gt_arrays[t] = gt_image_to_array(m.msg)
            except ValueError as exc:
                acc.error("gt_decode", f"{t} at stamp {m.stamp_ns}: {exc}")
                gt_arrays[t] = None
        gt_sem = gt_arrays.get(spec.gt_semantic) if spec.gt_semantic else None
        gt_dep = gt_arrays.get(spec.gt_depth) if spec.gt_depth else None
        # the depth uncertainty only where it is scored (frames with depth GT; ignored without the head)
        res = pipeline.process(rgb, K=K, depth_uncertainty=gt_dep is not None)
        timings = {"decode": decode_ms, **res.timings_ms}
        timings["total"] = sum(timings.values())
        acc.add(res.labels, res.depth, rgb, gt_sem, gt_dep, timings, img.stamp_ns, img.topic, res.depth_uncertainty)
    for t in gt_topics:
        acc.counters[f"gt_matched[{t}]"] = stats.matched.get(t, 0)
        acc.counters[f"gt_unmatched[{t}]"] = stats.unmatched.get(t, 0)
        if t in stats.max_offset_ms:
            acc.counters[f"gt_max_stamp_offset_us[{t}]"] = int(round(1000 * stats.max_offset_ms[t]))
    for t in info_topics:
        acc.counters[f"camera_info_matched[{t}]"] = stats.matched.get(t, 0)
    for e in bag.errors:
        acc.error("storage", e)
    for e in bag.message_errors:
        if e.split(" ", 1)[0] in secondary:
            acc.error("corrupt_gt_message", e)
