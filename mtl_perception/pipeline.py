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
from mtl_perception.geometry import Letterbox, canonical_depth_scale, check_intrinsics, default_intrinsics

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
    # "frame": the K given with the frame; "default": the model's default field of view (no or an
    # unusable K). ``depth_scale``: metres per unit of the network's canonical depth (1 if none).
    intrinsics_source: str = "frame"
    depth_scale: float = 1.0


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
        """(H, W) of the products for a frame of ``frame_hw``: the frame's size, or for
        ``output_resolution="network"`` the frame's window inside the network input (aspect kept)."""
        return self._output_size(self.engine.letterbox(tuple(frame_hw[:2])))

    def _output_size(self, box: Letterbox) -> tuple[int, int]:
        return box.frame_hw if self.output_resolution == "input" else box.content_hw

    def depth_scale(self, frame_hw: tuple[int, int], K: np.ndarray | None) -> tuple[float, str]:
        """(metres per canonical depth unit, intrinsics source) for a frame of ``frame_hw``."""
        return self._depth_scale(self.engine.letterbox(tuple(frame_hw[:2])), K)

    def _depth_scale(self, box: Letterbox, K: np.ndarray | None) -> tuple[float, str]:
        info = self.engine.info
        K_ok = check_intrinsics(K)
        source = "frame" if K_ok is not None else "default"
        if not info.canonical_focal:
            return 1.0, source
        if K_ok is None:
            K_ok = default_intrinsics(box.frame_hw[0], box.frame_hw[1], info.default_hfov_deg)
        return canonical_depth_scale(box.network_focal(K_ok), info.canonical_focal), source

    def _buffer(self, name: str, size: tuple[int, int], dtype: type) -> np.ndarray | None:
        if not self.reuse_buffers:
            return None
        buf = self._buffers.get(name)
        if buf is None or buf.shape != tuple(size):
            buf = self._buffers[name] = np.empty(size, dtype)
        return buf

    def process(self, rgb: np.ndarray, K: np.ndarray | None = None) -> FrameResult:
        """(H, W, 3) uint8 RGB -> FrameResult at ``output_size((H, W))``.

        ``K``: the frame's 3x3 camera matrix in pixels (of this frame's size). It turns a model's
        canonical depth into metres; without it (or with an unusable one) the model's default field
        of view is assumed and ``intrinsics_source`` says ``"default"``."""
        t0 = time.perf_counter()
        x = self.engine.preprocess(rgb)
        t1 = time.perf_counter()
        out = self.engine.infer(x)
        t2 = time.perf_counter()
        box = self.engine.letterbox(rgb.shape[:2])  # once per frame: products, crop and depth scale
        size = self._output_size(box)
        scale, source = self._depth_scale(box, K)
        grid_labels = labels_from_logits(box.content(out["semseg"][0]))
        labels = resize_labels(grid_labels, size, self._buffer("labels", size, np.uint8))
        grid_depth = box.content(out["depth"][0, 0])
        if scale != 1.0:
            grid_depth = grid_depth * np.float32(scale)
        depth = resize_depth(grid_depth, size, self._buffer("depth", size, np.float32))
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
            intrinsics_source=source,
            depth_scale=scale,
        )
