"""Live evaluator: subscribes to the perception node's outputs and the bag's ground truth, matches them
by header stamp and writes the same report as ``replay-eval`` (shared ``ReplayAccumulator``).

Topics (all configurable): ``/perception_node/semantic`` (mono8) and ``/perception_node/depth``
(32FC1) from the node; ``/camera/gt/semantic`` and ``/camera/gt/depth`` from the player;
optionally the camera image (for the sample PNGs) and ``/perception_node/stats``
(``PerceptionStats``, when ``mtl_perception.msg`` is importable) for the node's stage timings.

A frame is complete when predictions, every enabled ground truth and (if subscribed) stats
with its stamp have arrived; it is then accumulated. At the end (``expected_frames`` frames seen,
``idle_timeout`` without messages, or Ctrl-C) incomplete frames are flushed: ground truth
without prediction = frames the node dropped (latest-frame policy) and is reported as drops.
All subscriptions are reliable keep-last ``queue_depth``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PRED_SEM, PRED_DEP, GT_SEM, GT_DEP, IMAGE, STATS = "pred_sem", "pred_dep", "gt_sem", "gt_dep", "image", "stats"


@dataclass
class EvaluatorConfig:
    semantic_topic: str = "/perception_node/semantic"
    depth_topic: str = "/perception_node/depth"
    stats_topic: str = "/perception_node/stats"
    gt_semantic_topic: str = "/camera/gt/semantic"
    gt_depth_topic: str = "/camera/gt/depth"
    image_topic: str = "/camera/image_raw"
    stamp_tolerance: float = 0.0
    expected_frames: int = 0
    idle_timeout: float = 10.0
    max_depth: float = 80.0
    keep_samples: int = 4
    queue_depth: int = 100
    report_dir: str | None = None
    frames_dir: str | None = None  # one PNG per evaluated frame (input | semantic | depth), e.g. for the demo GIF
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] | None = None
    teardown_timeout: float = 10.0  # s for destroying the node / rclpy shutdown after the report is written


class FrameMatcher:
    """ROS-free core: pieces of a frame keyed by header stamp -> accumulator (unit-testable)."""

    def __init__(self, cfg: EvaluatorConfig, acc: Any, kinds: set[str], max_pending: int = 300) -> None:
        self.cfg, self.acc, self.kinds = cfg, acc, kinds
        self.tol = int(round(cfg.stamp_tolerance * 1e9))
        self.pending: dict[int, dict[str, Any]] = {}
        self.max_pending = max_pending
        self.stamps_done: list[int] = []
        self.drops = 0
        self.lock = threading.Lock()
        self.last_msg = 0.0
        self.seen = dict.fromkeys(sorted(kinds), 0)
        self.on_frame: Any = None  # called with (stamp_ns, pieces) after each accumulated frame

    def _key(self, stamp: int, kind: str) -> int:
        if stamp in self.pending or self.tol == 0:
            return stamp
        best = min(
            (k for k in self.pending if kind not in self.pending[k] and abs(k - stamp) <= self.tol),
            key=lambda k: abs(k - stamp),
            default=None,
        )
        return stamp if best is None else best

    def put(self, kind: str, stamp: int, value: Any) -> None:
        with self.lock:
            self.last_msg = time.monotonic()
            self.seen[kind] = self.seen.get(kind, 0) + 1
            key = self._key(stamp, kind)
            rec = self.pending.setdefault(key, {})
            rec[kind] = value
            if self.kinds <= set(rec):
                self._finish(key)
            while len(self.pending) > self.max_pending:
                self._finish(min(self.pending))

    def _finish(self, key: int) -> None:
        rec = self.pending.pop(key)
        if PRED_SEM not in rec or PRED_DEP not in rec:
            if GT_SEM in rec or GT_DEP in rec or IMAGE in rec:
                self.drops += 1
            return
        stats = rec.get(STATS) or {}
        self.acc.add(
            rec[PRED_SEM],
            rec[PRED_DEP],
            rec.get(IMAGE),
            rec.get(GT_SEM),
            rec.get(GT_DEP),
            stats,
            key,
            self.cfg.semantic_topic,
        )
        self.stamps_done.append(key)
        if self.on_frame is not None:
            self.on_frame(key, rec)

    def flush(self) -> None:
        with self.lock:
            for key in sorted(self.pending):
                self._finish(key)

    def done(self) -> bool:
        n = len(self.stamps_done) + self.drops
        return bool(self.cfg.expected_frames) and n >= self.cfg.expected_frames


def _decode(kind: str, msg: Any) -> Any:
    from mtl_perception.data.bags import gt_image_to_array
    from mtl_perception.imaging import image_msg_to_rgb

    if kind == IMAGE:
        return image_msg_to_rgb(msg)
    if kind == STATS:
        return {
            "decode": float(msg.conversion_ms),
            "preprocess": float(msg.preprocess_ms),
            "inference": float(msg.inference_ms),
            "postprocess": float(msg.postprocess_ms),
            "node_total": float(msg.end_to_end_ms),
        }
    return gt_image_to_array(msg)


def frame_writer(folder: str | Path, palette: Any, max_depth: float) -> Any:
    """``on_frame`` callback: ``frame_<stamp>.png`` = received input | predicted semantic | predicted depth."""
    import cv2

    from mtl_perception.visualize import colorize_depth, colorize_labels

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    lut = np.asarray(palette, np.uint8) if palette is not None else None

    def write(stamp: int, rec: dict[str, Any]) -> None:
        labels, depth, image = rec[PRED_SEM], rec[PRED_DEP], rec.get(IMAGE)
        h, w = labels.shape
        if image is None or image.shape[:2] != (h, w):
            image = np.zeros((h, w, 3), np.uint8)  # camera frame not received: black input tile
        sem = colorize_labels(labels, lut) if lut is not None else colorize_labels(labels)
        row = np.concatenate([image, sem, colorize_depth(depth, max_depth)], axis=1)
        cv2.imwrite(str(out / f"frame_{stamp:020d}.png"), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))

    return write


def run_evaluator(cfg: EvaluatorConfig, args: list[str] | None = None, destroy: bool = True) -> dict[str, Any]:
    """Spin an ``evaluator`` node until done; write the report (if ``cfg.report_dir``); return results.

    ``destroy=False`` skips destroying the node and shutting rclpy down, for a caller that ends
    its process right after (``live-eval``: the Fast DDS participant deletion can block for
    minutes holding the GIL, see ``teardown``)."""
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from mtl_perception.evaluate.replay import ReplayAccumulator

    if not cfg.class_names:
        from mtl_perception.data.cityscapes_classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

        cfg.class_names = list(CITYSCAPES_CLASSES)
        cfg.palette = np.asarray(CITYSCAPES_PALETTE).tolist()
    acc = ReplayAccumulator(cfg.class_names, cfg.palette, cfg.max_depth, cfg.keep_samples, sample_stride=1)
    rclpy.init(args=args)
    node = rclpy.create_node("replay_evaluator")
    qos = QoSProfile(depth=cfg.queue_depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    topics = {
        PRED_SEM: cfg.semantic_topic,
        PRED_DEP: cfg.depth_topic,
        GT_SEM: cfg.gt_semantic_topic,
        GT_DEP: cfg.gt_depth_topic,
        IMAGE: cfg.image_topic,
    }
    topics = {k: v for k, v in topics.items() if v}
    types: dict[str, Any] = dict.fromkeys(topics, Image)
    if cfg.stats_topic:
        try:
            from mtl_perception.msg import PerceptionStats

            topics[STATS], types[STATS] = cfg.stats_topic, PerceptionStats
        except ImportError:
            acc.warnings.append("mtl_perception.msg not importable: the node's stage timings are not collected")
    kinds = set(topics) - {IMAGE}  # the image only feeds the sample PNGs; never wait for it
    matcher = FrameMatcher(cfg, acc, kinds)
    if cfg.frames_dir:
        matcher.on_frame = frame_writer(cfg.frames_dir, cfg.palette, cfg.max_depth)
    t_start = time.monotonic()

    def callback(kind: str):
        def cb(msg: Any) -> None:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            try:
                value = _decode(kind, msg)
            except ValueError as exc:
                acc.error(f"decode_{kind}", f"{topics[kind]} at stamp {stamp}: {exc}")
                return
            matcher.put(kind, stamp, value)

        return cb

    subs = [node.create_subscription(types[k], t, callback(k), qos) for k, t in topics.items()]
    interrupted = False
    try:
        try:
            while rclpy.ok():
                rclpy.spin_once(node, timeout_sec=0.1)
                if matcher.done():
                    break
                if cfg.idle_timeout > 0:
                    ref = matcher.last_msg or t_start
                    limit = cfg.idle_timeout if matcher.last_msg else max(cfg.idle_timeout, 60.0)
                    if time.monotonic() - ref > limit:
                        break
        except KeyboardInterrupt:
            interrupted = True
        matcher.flush()
        # results and report BEFORE the ROS teardown, which can hang (below): nothing is lost then
        results = _results(cfg, acc, matcher, topics, t_start, interrupted)
    except BaseException:
        teardown(node, subs, cfg.teardown_timeout)
        raise
    if not destroy:
        from mtl_perception.ros.shutdown import keep_until_exit

        keep_until_exit(node, *subs)  # its destructor would delete the participant just the same
        results["meta"]["ros_teardown"] = "skipped"
        return results
    done = teardown(node, subs, cfg.teardown_timeout)
    results["meta"]["ros_teardown"] = "done" if done else f"timed out after {cfg.teardown_timeout:g} s"
    return results


def teardown(node: Any, subs: list[Any], timeout: float) -> bool:
    """Destroy ``node`` and shut rclpy down, waiting at most ``timeout`` s; False if it did not finish.

    Deleting the Fast DDS participant sometimes blocks for minutes (seen with the LARGE_DATA
    transport while the perception node is still up: ``destroy_node`` never returned), which kept
    ``live-eval`` and so ``bag_replay.launch.py`` from ending after the evaluation. The wait is
    bounded only where that call releases the GIL; ``live-eval`` therefore skips the teardown
    (``run_evaluator(destroy=False)``) and ends its process with ``os._exit`` after its output.
    """
    import rclpy

    def work() -> None:
        for s in subs:
            node.destroy_subscription(s)
        node.destroy_node()
        rclpy.try_shutdown()

    t = threading.Thread(target=work, name="ros-teardown", daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


def _results(
    cfg: EvaluatorConfig, acc: Any, matcher: FrameMatcher, topics: dict[str, str], t_start: float, interrupted: bool
) -> dict[str, Any]:
    acc.counters["frames_dropped_by_node"] = matcher.drops
    for kind, n in matcher.seen.items():
        acc.counters[f"received[{topics.get(kind, kind)}]"] = n
    meta = {
        "mode": "live",
        **{f"{k}_topic": v for k, v in topics.items()},
        "stamp_tolerance_s": cfg.stamp_tolerance,
        "expected_frames": cfg.expected_frames,
        "wall_s": round(time.monotonic() - t_start, 2),
    }
    status = "interrupted" if interrupted else None
    results = acc.results(meta, status=status)
    if results["status"] == "ok" and (matcher.drops or (cfg.expected_frames and acc.frames < cfg.expected_frames)):
        results["status"] = "ok_with_drops"
    results["stamps_ns"] = matcher.stamps_done
    if cfg.report_dir:
        report = acc.write_report(Path(cfg.report_dir), "Live replay evaluation", results)
        results["meta"]["report"] = str(report)
    return results


def results_json(results: dict[str, Any]) -> str:
    from mtl_perception.evaluate.report import _json_default

    slim = json.loads(json.dumps(results, default=_json_default))
    slim.get("semseg", {}).pop("confusion", None)
    for k in ("bin_edges", "bin_count", "bin_abs_err", "bin_abs_rel"):
        slim.get("depth", {}).pop(k, None)
    return json.dumps(slim, indent=2)
