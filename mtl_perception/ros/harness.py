"""Drive a live perception node from other processes: the camera side and the output side.

Shared by the integration tests (test/ros_helpers), ``mtl-perception bench-node`` and
``mtl-perception node-grid``, so all three talk to the node exactly as a camera driver and RViz
would: separate processes, real DDS, the transport profile of ``transport_env``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtl_perception.paths import package_share_dir

TRANSPORTS = ("default", "large_data")


def fastdds_profile() -> Path:
    """The shipped Fast DDS XML profile (config/ros/fastdds_large_data.xml)."""
    return package_share_dir() / "config" / "ros" / "fastdds_large_data.xml"


def transport_env(transport: str, domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for every participant (camera, node, viewers): the SAME transport everywhere.

    ``large_data``: ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` (UDP discovery, TCP + shared-memory
    data) plus the shipped profile ``config/ros/fastdds_large_data.xml`` (its message and socket /
    segment sizes), exactly as the launch files set them. Mixing it with a default participant
    breaks discovery.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    env = dict(os.environ if base is None else base)
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if transport == "large_data":
        # what the launch files apply: the variable alone leaves the builtin transports' message
        # and buffer sizes at their defaults, measured 39 ms vs 8.5 ms publish -> ~/depth minus
        # inference at 720p (bench-node, tiny model, 2-core CPU)
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile())
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def node_command(
    model_path: str,
    namespace: str = "/perception",
    image_topic: str = "/camera/image",
    camera_info_topic: str = "/camera/camera_info",
    params: dict[str, Any] | None = None,
) -> list[str]:
    """Command line of a perception node process (what ``ros2 run`` would run)."""
    cmd = [
        sys.executable,
        "-m",
        "mtl_perception.ros.node",
        "--ros-args",
        "-r",
        f"__ns:={namespace}",
        "-r",
        f"image:={image_topic}",
        "-r",
        f"image/compressed:={image_topic}/compressed",
        "-r",
        f"camera_info:={camera_info_topic}",
        "-p",
        f"model_path:={model_path}",
    ]
    for k, v in (params or {}).items():
        if isinstance(v, bool):
            v = str(v).lower()
        cmd += ["-p", f"{k}:={v}"]
    return cmd


# ---------------------------------------------------------------------------------------------- frames
def pattern_frame(height: int, width: int, seed: int = 0, gray: bool = False) -> np.ndarray:
    """A smooth, textured RGB frame (cheap to make at any size; not a photo)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width]
    img[..., 0] = ((img[..., 0].astype(np.int32) + xx * 255 // max(1, width - 1)) // 2).astype(np.uint8)
    img[..., 2] = ((img[..., 2].astype(np.int32) + yy * 255 // max(1, height - 1)) // 2).astype(np.uint8)
    if gray:
        img = np.repeat(img[..., 1:2], 3, axis=2)
    return img


def encode_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB -> the pixel array of ``encoding`` (as a camera driver would produce it)."""
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return np.ascontiguousarray(rgb[..., ::-1])
    if encoding in ("rgba8", "bgra8"):
        c = rgb if encoding == "rgba8" else rgb[..., ::-1]
        return np.dstack([c, np.full(rgb.shape[:2], 255, np.uint8)])
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding.startswith("bayer_"):
        ch = {"r": 0, "g": 1, "b": 2}
        mosaic = np.empty(rgb.shape[:2], np.uint8)
        for i, c in enumerate(encoding[6:10]):
            dy, dx = divmod(i, 2)
            mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, ch[c]]
        return mosaic
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
        packed = np.empty((*rgb.shape[:2], 2), np.uint8)
        uyvy = encoding in ("yuv422", "uyvy")
        packed[..., 1 if uyvy else 0] = yuv[..., 0]
        chroma = packed[..., 0 if uyvy else 1]
        chroma[:, 0::2] = yuv[:, 0::2, 1]
        chroma[:, 1::2] = yuv[:, 0::2, 2]
        return packed
    raise ValueError(f"encode_rgb: unsupported encoding {encoding}")


def image_message(pixels: np.ndarray, encoding: str, header: Any, pad: int = 0) -> Any:
    """sensor_msgs/Image with ``pad`` junk bytes after every row (step > width * bpp)."""
    from sensor_msgs.msg import Image

    h, w = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xCD, np.uint8)], axis=1)
    return Image(
        header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=rows.shape[1], data=rows.tobytes()
    )


def camera_info_message(height: int, width: int, header: Any, focal_ratio: float = 0.8) -> Any:
    from sensor_msgs.msg import CameraInfo

    f = focal_ratio * width
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return CameraInfo(
        header=header,
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
        r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
        p=[f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    )


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def to_stamp(ns: int) -> Any:
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ---------------------------------------------------------------------------------------------- camera
class Camera:
    """Publishes Image (+ CameraInfo) like a driver: best-effort or reliable, depth 1..N."""

    def __init__(
        self,
        node: Any,
        image_topic: str,
        info_topic: str,
        reliable: bool = False,
        depth: int = 1,
        compressed: bool = False,
    ) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        q = QoSProfile(
            depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        )
        self.node = node
        topic = image_topic + "/compressed" if compressed else image_topic
        self.image = node.create_publisher(CompressedImage if compressed else Image, topic, q)
        self.info = node.create_publisher(CameraInfo, info_topic, q)

    def wait_for_subscriber(self, timeout: float = 60.0, settle: float = 0.6) -> None:
        """Wait until the node subscribes to the image and camera_info topics, then ``settle`` s more.

        DDS matches each side on its own: this writer seeing the node's reader does not mean the
        reader has matched this writer yet, and a best-effort sample sent before that is dropped.
        The settle time covers that gap on a loaded machine (0.3 s once lost a first frame in CI)."""
        deadline = time.monotonic() + timeout
        for pub in (self.image, self.info):
            while pub.get_subscription_count() < 1:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no subscriber on {pub.topic_name} after {timeout:.0f} s")
                time.sleep(0.05)
        time.sleep(settle)

    def header(self, frame_id: str = "camera_optical_frame", ns: int | None = None) -> Any:
        from std_msgs.msg import Header

        if ns is None:
            ns = time.time_ns()
        return Header(stamp=to_stamp(ns), frame_id=frame_id)


# ---------------------------------------------------------------------------------------------- outputs
OUTPUT_TOPICS = (
    "semantic",
    "semantic/confidence",
    "semantic_color",
    "depth",
    "depth/camera_info",
    "depth/uncertainty",
    "points",
    "result",
    "stats",
)


def output_types() -> dict[str, Any]:
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    types: dict[str, Any] = {
        "semantic": Image,
        "semantic/confidence": Image,
        "semantic_color": Image,
        "depth": Image,
        "depth/camera_info": CameraInfo,
        "depth/uncertainty": Image,
        "points": PointCloud2,
    }
    try:
        from mtl_perception.msg import PerceptionResult, PerceptionStats

        types.update(result=PerceptionResult, stats=PerceptionStats)
    except ImportError:
        pass
    return types


class Recorder:
    """Subscribes (reliable, like RViz) to the node's outputs and keeps what arrives, with receipt times."""

    def __init__(
        self, node: Any, node_fqn: str, topics: Iterable[str] = OUTPUT_TOPICS, keep: bool = True, depth: int = 50
    ) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.lock = threading.Lock()
        self.messages: dict[str, list[tuple[float, Any]]] = {}
        self.counts: dict[str, int] = {}
        self.keep = keep
        self.callbacks: list[Any] = []
        types = output_types()
        q = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = {}
        for t in topics:
            if t not in types:
                continue
            self.messages[t] = []
            self.counts[t] = 0
            self.subs[t] = node.create_subscription(types[t], f"{node_fqn}/{t}", self._cb(t), q)

    def _cb(self, topic: str) -> Any:
        def cb(msg: Any) -> None:
            now = time.time_ns()
            with self.lock:
                self.counts[topic] += 1
                if self.keep:
                    self.messages[topic].append((now, msg))
            for f in self.callbacks:
                f(topic, now, msg)

        return cb

    def matched(self) -> bool:
        return all(s.get_publisher_count() > 0 for s in self.subs.values())


class AttachError(RuntimeError):
    """The node's outputs never matched, or an interface a caller needs is not generated."""


def attach(
    node: Any,
    topics: Iterable[str],
    reliable: bool,
    node_fqn: str = "/perception/perception_node",
    required: str | None = None,
    why: str = "",
    depth: int = 5,
    camera_depth: int = 1,
    timeout: float = 60.0,
) -> tuple[Recorder, Camera]:
    """Subscribe ``topics`` of the node, publish its camera (/camera/image + camera_info), and wait
    until both sides matched: what a camera driver and a viewer do before the first frame.

    ``required``: a topic of the generated mtl_perception.msg interfaces the caller cannot do without
    (``why`` says what for). Raises :class:`AttachError` with an actionable message."""
    rec = Recorder(node, node_fqn, tuple(topics), keep=False, depth=depth)
    if required is not None and required not in rec.subs:
        raise AttachError(f"mtl_perception.msg is not generated (run `make setup`): {why}")
    cam = Camera(node, "/camera/image", "/camera/camera_info", reliable=reliable, depth=camera_depth)
    if not spin_until(node, rec.matched, timeout):
        raise AttachError("the node's outputs never matched this process (transport / domain mismatch?)")
    try:
        cam.wait_for_subscriber(timeout)
    except TimeoutError as exc:
        raise AttachError(f"{exc} (is the node subscribed to /camera/image?)") from exc
    return rec, cam


class SpinningNode:
    """An rclpy node of this process, spun in a daemon thread: the camera / viewer side of a live
    perception node (integration tests, ``bench-node --faults``).

    ``domain_id`` given: the node lives in its own context on that domain (tests run several domains
    from one process); ``None``: rclpy's default context, which a command tears down with
    ``shutdown.bounded_teardown`` (see :meth:`stop_spinning`)."""

    def __init__(self, name: str, domain_id: int | None = None) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.ctx = None if domain_id is None else Context()
        if self.ctx is None:
            rclpy.init()
        else:
            rclpy.init(context=self.ctx, domain_id=int(domain_id))
        self.node = rclpy.create_node(name, context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.02)
            except Exception:  # the context is shutting down under us
                if self._stop.is_set():
                    return
                raise

    def set_params(self, params: list, node_fqn: str, timeout: float = 10.0) -> list[bool]:
        """Set parameters of ``node_fqn`` through its parameter service; one success flag per parameter."""
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.node, node_fqn)
        if not client.wait_for_services(timeout_sec=timeout):
            raise TimeoutError(f"the parameter services of {node_fqn} are not available after {timeout:.0f} s")
        future = client.set_parameters(params)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"set_parameters on {node_fqn} did not answer in {timeout:.0f} s")
            time.sleep(0.02)
        return [r.successful for r in future.result().results]

    def stop_spinning(self) -> None:
        """Stop the spin thread and the executor; the node and its DDS participant stay."""
        self._stop.set()
        self._thread.join(5)
        self.executor.shutdown(timeout_sec=1.0)

    def close(self) -> None:
        """Stop spinning, destroy the node and shut its context down. Stop the node processes it talks
        to first (deleting a participant mid-read from a live peer can deadlock Fast DDS: see the
        test helpers' ``Peer``)."""
        import rclpy

        self.stop_spinning()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


# ---------------------------------------------------------------------------------------------- live node
class LiveNode:
    """A perception_node process (context manager): started with ``env``, ready when its log says so."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: str | Path, timeout: float = 180.0) -> None:
        import subprocess

        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.timeout = timeout
        self._interrupted = False

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while "ready:" not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"perception_node exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"perception_node not ready after {self.timeout:.0f} s: {self.log()[-2000:]}")
            time.sleep(0.1)

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def interrupt(self) -> None:
        """Send SIGINT once (Ctrl-C) without waiting: ``stop()`` waits; stopping several nodes is
        interrupt() on each, then stop() on each, as ``ros2 launch`` does."""
        import signal

        if self.proc.poll() is None and not self._interrupted:
            self._interrupted = True
            self.proc.send_signal(signal.SIGINT)

    def stop(self, timeout: float = 20.0) -> int:
        import signal

        if self.proc.poll() is None:
            self.interrupt()
            try:
                self.proc.wait(timeout)
            except Exception:
                self.proc.send_signal(signal.SIGUSR1)  # the node dumps its threads' stacks into the log
                time.sleep(1.0)
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> LiveNode:
        self.wait_ready()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def spin_until(node: Any, predicate: Any, timeout: float) -> bool:
    import rclpy

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        rclpy.spin_once(node, timeout_sec=0.005)
    return True
