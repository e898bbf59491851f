"""Counters, frame rate, rolling latency percentiles and a keyed log throttle (no rclpy)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import numpy as np

COUNTERS = (
    "frames_received",
    "frames_processed",
    "frames_dropped_stale",
    "frames_dropped_invalid",
    "frames_failed",
    "camera_info_mismatches",
    "resolution_changes",
    # processed without a usable camera_info: metric depth assumed the model's default field of view
    "frames_default_intrinsics",
    # the engine was replaced at runtime (decoder / precision / backend / model changed while serving)
    "engine_switches",
    "engine_switch_failures",
    # published by the camera but never handed to the node: gaps in the publisher's sequence numbers
    # (the DDS input queue overwritten while the executor was busy, or lost in best-effort transport)
    "frames_lost_input",
    # processed with the last camera_info although none arrived for camera_info_timeout s
    "frames_stale_camera_info",
    # the out-of-order stamp check started over: the clock or the image stamps jumped back
    "stamp_resets",
    # SetParameters requests refused (wrong type, out of range, unknown choice, read-only, undeclared)
    "parameter_rejections",
)
# node-wide events, counted on every camera's stats: /diagnostics shows them once, not summed
NODE_COUNTERS = ("engine_switches", "engine_switch_failures", "parameter_rejections")


class NodeStats:
    """Thread-safe counters + the last ``window`` per-frame timings (for /diagnostics)."""

    def __init__(self, window: int = 200) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self._done: collections.deque[float] = collections.deque(maxlen=1000)
        self._timings: collections.deque[dict[str, float]] = collections.deque(maxlen=window)
        self.last_frame_time: float | None = None

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def frame_done(self, timings_ms: dict[str, float]) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts["frames_processed"] += 1
            self._done.append(now)
            self._timings.append(dict(timings_ms))
            self.last_frame_time = now

    def fps(self, horizon_s: float = 1.0) -> float:
        now = time.monotonic()
        with self._lock:
            n = sum(1 for t in self._done if now - t <= horizon_s)
        return n / horizon_s

    def percentiles(self, q: float = 50.0) -> dict[str, float]:
        with self._lock:
            rows = list(self._timings)
        if not rows:
            return {}
        return {k: float(np.percentile([r[k] for r in rows if k in r], q)) for k in rows[-1]}

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


class Throttle:
    """Log a message per ``key`` at most every ``period_s``, saying how many were suppressed."""

    def __init__(self, log: Callable[[str], None], period_s: float = 2.0) -> None:
        self._log = log
        self._period = period_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = collections.defaultdict(int)

    def __call__(self, key: str, text: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self._period:
            self._suppressed[key] += 1
            return False
        n = self._suppressed.pop(key, 0)
        self._last[key] = now
        self._log(text + (f" ({n} similar suppressed)" if n else ""))
        return True
