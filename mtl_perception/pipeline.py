"""One frame through the network: RGB in, labels + metric depth out, with stage timings.

The ROS node, ``replay-eval`` and the demo all call ``FramePipeline.process`` so that every
figure (latency, accuracy) is measured on exactly what the node publishes. No rclpy here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mtl_perception.deploy.engine import InferenceEngine
from mtl_perception.deploy.postprocess import labels_from_logits, resize_depth, resize_labels

OUTPUT_RESOLUTIONS = ("input", "network")


@dataclass
class FrameResult:
    """Products of one frame. ``labels`` uint8 HxW (255 = unknown), ``depth`` float32 HxW metres
    (NaN = invalid, REP 118), ``timings_ms`` per stage: preprocess, inference, postprocess."""

    labels: np.ndarray
    depth: np.ndarray
    # labels on the network grid (before the nearest resize): colourise these, then resize, for
    # the same pixels at a fraction of the cost (see visualize.colorize_labels_resized)
    grid_labels: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class FramePipeline:
    """engine.preprocess -> engine.infer -> argmax + resize (labels nearest, depth bilinear NaN-aware).

    ``output_resolution="input"`` returns products at the frame's size (what a consumer
    overlays on the camera image); ``"network"`` at the network's grid (cheaper to publish;
    pair it with a scaled camera_info, see ``imaging.scale_camera_info``).
    """

    def __init__(self, engine: InferenceEngine, output_resolution: str = "input", reuse_buffers: bool = False) -> None:
        """``reuse_buffers``: resize into the same two arrays every frame (no page faults on fresh
        720p arrays; ~2 ms per frame in the node). Only for callers that are done with a result
        before the next ``process`` call (the node publishes and drops it); others keep the default."""
        if output_resolution not in OUTPUT_RESOLUTIONS:
            raise ValueError(f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, got {output_resolution!r}")
        self.engine = engine
        self.output_resolution = output_resolution
        self.reuse_buffers = reuse_buffers
        self._buffers: dict[str, np.ndarray] = {}

    @property
    def network_size(self) -> tuple[int, int]:
        """(H, W) of the network input (and of the products with output_resolution='network')."""
        return tuple(self.engine.input_size)

    def output_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the products for a frame of ``frame_hw``."""
        return tuple(frame_hw[:2]) if self.output_resolution == "input" else self.network_size

    def _buffer(self, name: str, size: tuple[int, int], dtype: type) -> np.ndarray | None:
        if not self.reuse_buffers:
            return None
        buf = self._buffers.get(name)
        if buf is None or buf.shape != tuple(size):
            buf = self._buffers[name] = np.empty(size, dtype)
        return buf

    def process(self, rgb: np.ndarray) -> FrameResult:
        """(H, W, 3) uint8 RGB -> FrameResult at ``output_size((H, W))``."""
        t0 = time.perf_counter()
        x = self.engine.preprocess(rgb)
        t1 = time.perf_counter()
        out = self.engine.infer(x)
        t2 = time.perf_counter()
        size = self.output_size(rgb.shape[:2])
        grid_labels = labels_from_logits(out["semseg"][0])
        labels = resize_labels(grid_labels, size, self._buffer("labels", size, np.uint8))
        depth = resize_depth(out["depth"][0, 0], size, self._buffer("depth", size, np.float32))
        t3 = time.perf_counter()
        return FrameResult(
            labels=np.ascontiguousarray(labels, np.uint8),
            depth=np.ascontiguousarray(depth, np.float32),
            timings_ms={
                "preprocess": 1e3 * (t1 - t0),
                "inference": 1e3 * (t2 - t1),
                "postprocess": 1e3 * (t3 - t2),
            },
            grid_labels=grid_labels,
        )
