"""/diagnostics for the node: diagnostic_updater when a ROS install has it, else a 1 Hz publisher.

Both paths publish one ``diagnostic_msgs/DiagnosticStatus`` built by the same function, so the
content is identical: OK while frames flow, WARN when input stops, is being rejected, camera_info
mismatches, is missing or stopped, or the stamps / clock jumped back, ERROR when inference fails.
The fallback publishes on a steady-clock timer: with ``use_sim_time`` it keeps publishing while
/clock stalls or jumps back (a ROS-time timer would wait for sim time to catch up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

try:
    import diagnostic_updater as _du
except ImportError:  # not on PyPI
    _du = None

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def assess(counts: dict[str, int], prev: dict[str, int], since_last_frame_s: float | None) -> tuple[int, str]:
    """(level, message) from counters now and one period ago."""
    delta = {k: counts[k] - prev.get(k, 0) for k in counts}
    if delta.get("frames_failed", 0):
        return ERROR, f"{delta['frames_failed']} frame(s) failed in inference/publishing (see the node log)"
    if counts.get("frames_received", 0) == 0:
        return WARN, "no image received yet (check the image remap and that QoS matches)"
    if delta.get("frames_dropped_invalid", 0):
        return WARN, f"{delta['frames_dropped_invalid']} invalid frame(s) dropped (see the node log)"
    if delta.get("camera_info_mismatches", 0):
        return WARN, "camera_info size differs from the image: ~/points and ~/depth/camera_info skipped"
    if delta.get("frames_stale_camera_info", 0):
        return WARN, (
            f"camera_info stopped: {delta['frames_stale_camera_info']} frame(s) processed with the last one "
            "(older than camera_info_timeout)"
        )
    if delta.get("stamp_resets", 0):
        return WARN, "image stamps / the clock jumped back: the out-of-order check started over"
    if delta.get("frames_default_intrinsics", 0):
        return WARN, (
            "no usable camera_info: ~/points and ~/depth/camera_info not published; a canonical-camera "
            "model's depth assumes its default field of view"
        )
    if since_last_frame_s is not None and since_last_frame_s > 5.0:
        return WARN, f"no frame processed for {since_last_frame_s:.0f} s"
    return OK, "running"


class _StatusWrapper:
    """The subset of diagnostic_updater.DiagnosticStatusWrapper used here, for the fallback."""

    def __init__(self) -> None:
        self.status = DiagnosticStatus()

    def summary(self, level: int, message: str) -> None:
        self.status.level = level
        self.status.message = message

    def add(self, key: str, value: Any) -> None:
        self.status.values.append(KeyValue(key=key, value=str(value)))


class Diagnostics:
    def __init__(self, node: Any, name: str, hardware_id: str, fill: Callable[[Any], Any], period_s: float = 1.0):
        self._node = node
        self._name = name
        self._hardware_id = hardware_id
        self._fill = fill
        self.updater = None
        if _du is not None:
            self.updater = _du.Updater(node, period=period_s)
            self.updater.setHardwareID(hardware_id)
            self.updater.add(name, fill)
        else:
            self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            from rclpy.clock import Clock, ClockType

            self._timer = node.create_timer(period_s, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def publish(self) -> None:
        w = _StatusWrapper()
        w.status.name = f"{self._node.get_name()}: {self._name}"
        w.status.hardware_id = self._hardware_id
        self._fill(w)
        arr = DiagnosticArray(status=[w.status])
        arr.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(arr)


def since(t: float | None) -> float | None:
    return None if t is None else time.monotonic() - t
