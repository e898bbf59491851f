"""Bag player through rclpy: a bag's topics as raw CDR, paced by the bag's timestamps, plus /clock.

What ``ros2 bag play --clock`` does, for machines without ``ros2 bag`` (the PyPI wheels):

* messages are read with ``mtl_perception.data.bags`` and published as the serialized bytes
  from the bag (``Publisher.publish(bytes)`` -> ``publish_raw`` in rclpy), so nothing is
  re-encoded and stamps/frame ids are the recorded ones;
* message classes come from importing the type's Python module (``sensor_msgs.msg.Image``):
  topics whose type is not importable here are skipped with a warning;
* pacing: message i is published at ``t0 + (bag_t_i - bag_start) / rate`` (wall clock);
* ``/clock`` (rosgraph_msgs/Clock) from its own thread at ``clock_hz``: ``bag_start + (now - t0) *
  rate``, and once more with the message's bag time just before each message, so a
  ``use_sim_time`` node never sees a frame stamped ahead of its clock by more than a tick;
* publishers are reliable, keep-last ``qos_depth`` (volatile), matching the perception node's
  ``reliable`` replay setting; ``wait_for_subscribers`` holds the start until someone listens.

``--loop`` restarts from the beginning (stamps repeat, /clock jumps back, as ``ros2 bag play``).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("mtl_perception.player")


def message_class(msgtype: str) -> Any:
    """``pkg/msg/Name`` -> the rclpy message class (ImportError/AttributeError if unavailable)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


@dataclass
class PlayOptions:
    rate: float = 1.0
    clock: bool = False
    clock_hz: float = 100.0
    topics: list[str] | None = None
    remap: dict[str, str] = field(default_factory=dict)
    loop: bool = False
    qos_depth: int = 10
    wait_for_subscribers: float = 0.0
    start_delay: float = 0.0


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    clock_msgs: int = 0
    loops: int = 0
    wall_s: float = 0.0
    bag_s: float = 0.0
    max_lag_ms: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "total": sum(self.published.values()),
            "skipped_topics": self.skipped_topics,
            "clock_msgs": self.clock_msgs,
            "loops": self.loops,
            "wall_s": round(self.wall_s, 3),
            "bag_s": round(self.bag_s, 3),
            "achieved_rate": round(self.bag_s / self.wall_s, 3) if self.wall_s > 0 else None,
            "max_lag_ms": round(self.max_lag_ms, 2),
            "errors": self.errors,
        }


class BagPlayer:
    """Publishes a bag on ``node``; :meth:`play` blocks until the end (or :meth:`stop`)."""

    def __init__(self, node: Any, bag_path: str | Path, options: PlayOptions | None = None) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        from mtl_perception.data.bags import open_bag

        self.node = node
        self.opts = options or PlayOptions()
        if self.opts.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.opts.rate}")
        self.bag = open_bag(bag_path)
        self.stats = PlayStats()
        self._stop = threading.Event()
        qos = QoSProfile(
            depth=self.opts.qos_depth,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
        wanted = self.opts.topics
        infos = self.bag.topics
        if wanted:
            missing = [t for t in wanted if t not in infos]
            if missing:
                raise ValueError(
                    f"topics {', '.join(missing)} not in bag {bag_path}; topics: {self.bag.describe_topics()}"
                )
        self.publishers: dict[str, Any] = {}
        for name, info in infos.items():
            if wanted and name not in wanted:
                continue
            try:
                cls = message_class(info.msgtype)
            except (ImportError, AttributeError, ValueError) as exc:
                self.stats.skipped_topics[name] = f"type {info.msgtype} not importable ({exc.__class__.__name__})"
                log.warning("skipping %s: %s", name, self.stats.skipped_topics[name])
                continue
            out = self.opts.remap.get(name, name)
            self.publishers[name] = node.create_publisher(cls, out, qos)
        self.clock_pub = None
        if self.opts.clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = node.create_publisher(Clock, "/clock", qos)
        self._last_clock = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ clock
    def _publish_clock(self, ns: int) -> None:
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        with self._lock:  # never backwards within one pass (thread tick vs per-message tick)
            ns = max(int(ns), self._last_clock)
            self._last_clock = ns
            msg.clock.sec, msg.clock.nanosec = divmod(ns, 1_000_000_000)
            self.clock_pub.publish(msg)
            self.stats.clock_msgs += 1

    def _clock_loop(self, t0: float, start_ns: int, end_ns: int) -> None:
        period = 1.0 / self.opts.clock_hz
        while not self._stop.is_set():
            now = time.perf_counter()
            sim = start_ns + int((now - t0) * self.opts.rate * 1e9)
            self._publish_clock(min(sim, end_ns))
            self._stop.wait(period)

    # ------------------------------------------------------------------ play
    def wait_for_subscribers(self, timeout: float) -> bool:
        """Wait until every bag topic has at least one subscriber, up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        pubs = list(self.publishers.values())  # /clock excluded: only use_sim_time nodes subscribe it
        while time.monotonic() < deadline and not self._stop.is_set():
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()

    def play(self) -> PlayStats:
        if self.opts.wait_for_subscribers > 0:
            if not self.wait_for_subscribers(self.opts.wait_for_subscribers):
                log.warning(
                    "not every topic has a subscriber after %.1f s; playing anyway", self.opts.wait_for_subscribers
                )
        if self.opts.start_delay > 0:
            self._stop.wait(self.opts.start_delay)
        t_begin = time.perf_counter()
        try:
            while not self._stop.is_set():
                self._play_once()
                self.stats.loops += 1
                if not self.opts.loop:
                    break
        finally:
            self.stats.wall_s = time.perf_counter() - t_begin
            self.stats.errors.extend(e for e in self.bag.errors + self.bag.message_errors if e not in self.stats.errors)
        return self.stats

    def _play_once(self) -> None:
        start_ns, end_ns = self.bag.start_ns, max(self.bag.start_ns, self.bag.end_ns - 1)
        t0 = time.perf_counter()
        clock_thread = None
        self._last_clock = 0  # a new pass (--loop) restarts the clock, as `ros2 bag play --loop`
        if self.clock_pub is not None:
            self._publish_clock(start_ns)
            clock_thread = threading.Thread(target=self._clock_loop, args=(t0, start_ns, end_ns), daemon=True)
            clock_thread.start()
        last_ns = start_ns
        try:
            for topic, _msgtype, t_ns, raw in self.bag.raw_messages(self.publishers):
                if self._stop.is_set():
                    break
                due = t0 + (t_ns - start_ns) / 1e9 / self.opts.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    if self._stop.wait(delay):
                        break
                else:
                    self.stats.max_lag_ms = max(self.stats.max_lag_ms, -1e3 * delay)
                if self.clock_pub is not None:
                    self._publish_clock(t_ns)
                self.publishers[topic].publish(raw)
                self.stats.published[topic] = self.stats.published.get(topic, 0) + 1
                last_ns = t_ns
        finally:
            self.stats.bag_s += (last_ns - start_ns) / 1e9
            if clock_thread is not None:
                self._stop_clock(clock_thread)

    def _stop_clock(self, thread: threading.Thread) -> None:
        was_set = self._stop.is_set()
        self._stop.set()
        thread.join(timeout=2)
        if not was_set:
            self._stop.clear()

    def wait_for_acks(self, timeout: float) -> bool:
        """Wait until every matched reader acknowledged every sample (reliable), up to ``timeout`` s in all.

        Without it a loaded machine loses the last frames: the participant goes before their delivery.
        """
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout
        ok = True
        for pub in self.publishers.values():
            left = max(0.0, deadline - time.monotonic())
            ok = pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))) and ok
        return ok

    def close(self) -> None:
        self.bag.close()


def parse_remaps(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise ValueError(f"remap must be FROM:=TO, got {item!r}")
        out[src] = dst
    return out


def play_bag(bag_path: str | Path, options: PlayOptions, node_name: str = "bag_player") -> dict[str, Any]:
    """Init rclpy, play the bag once (or loop until Ctrl-C); returns the stats.

    For a process that ends next (``mtl-perception play``): on success the node is left for
    ``ros.shutdown.exit_process`` (its participant is not deleted: that can hang while the perception
    node is up, see ``teardown_on_error``); on an error it is torn down before the exception goes on."""
    import rclpy

    from mtl_perception.ros.shutdown import teardown_on_error

    rclpy.init()
    node = rclpy.create_node(node_name)
    with teardown_on_error(node):
        player = BagPlayer(node, bag_path, options)
        try:
            try:
                stats = player.play()
            except KeyboardInterrupt:
                player.stop()
                stats = player.stats
            time.sleep(0.2)  # let reliable writers flush the last samples before the participant goes
            player.wait_for_acks(5.0)
        finally:
            player.close()
        result = stats.as_dict()
        result["bag"] = str(bag_path)
        return result


# ---------------------------------------------------------------------- launch plan (pure; no `launch`)
REPLAY_ARGUMENTS: dict[str, tuple[str, str]] = {
    "bag": ("", "rosbag2 to replay (directory or .mcap/.db3), required"),
    "rate": ("1.0", "playback rate factor"),
    "player": ("auto", "auto (`ros2 bag play` where it exists, else `mtl-perception play`), ros2 or mtl"),
    "report": ("", "evaluator report directory (empty: replay_report_<bag name> in the current directory)"),
    "ready_timeout": (
        "120",
        "seconds to wait for the node to subscribe to its image topic (engine built) before giving up",
    ),
    "start_delay": ("0.0", "extra seconds the player waits after the node (and evaluator) are ready"),
    "evaluate": ("true", "start the evaluator (live-eval) and write the report; the launch ends when it does"),
}

EVALUATOR_NODE = "/replay_evaluator"  # mtl_perception.ros.evaluator.run_evaluator's node
GT_SEMANTIC_TOPIC = "/camera/gt/semantic"  # live-eval's default ground-truth topic (subscribed first)
ROS2_DISCOVERY_MARGIN_S = 1.0  # `ros2 bag play` cannot wait for subscribers: matching time after the gates


def replay_plan(
    values: dict[str, str],
    ros2_available: bool | None = None,
    *,
    mtl_exe: str | None = None,
    ros2_exe: str | None = None,
) -> dict[str, Any]:
    """Launch values -> the command lines ``launch/bag_replay.launch.py`` starts, in order.

    ``gate`` (``mtl-perception wait-ready``) exits 0 once the perception node has subscribed to
    ``image_topic`` (it does so only after its engine is built); then ``evaluator`` starts with
    ``evaluator_gate`` (waits for the evaluator's subscriptions); then ``player``. Every command
    is an absolute path: ``mtl_exe`` (default ``<package prefix>/lib/mtl_perception/mtl-perception``
    from the ament index) and ``ros2_exe`` (default ``shutil.which("ros2")`` now, at plan time), so
    nothing depends on the PATH of the processes launch starts.
    """
    import shutil

    from mtl_perception.ros.launch_args import package_executable

    bag = values.get("bag", "")
    if not bag:
        raise ValueError("bag_replay.launch.py needs bag:=PATH")
    rate = float(values.get("rate", "1.0"))
    if rate <= 0:
        raise ValueError(f"rate:={rate} must be > 0")
    choice = values.get("player", "auto")
    if choice not in ("auto", "ros2", "mtl"):
        raise ValueError(f"player:={choice!r} must be auto, ros2 or mtl")
    evaluate = str(values.get("evaluate", "true")).strip().lower()
    if evaluate not in ("true", "false"):
        raise ValueError(f"evaluate:={evaluate!r} must be true or false")
    delay = float(values.get("start_delay", "0.0"))
    timeout = float(values.get("ready_timeout", "120"))
    if delay < 0 or timeout <= 0:
        raise ValueError("start_delay:= must be >= 0 and ready_timeout:= > 0")
    if ros2_exe is None and choice != "mtl":
        ros2_exe = shutil.which("ros2")
    if ros2_available is None:
        ros2_available = ros2_exe is not None and _importable("rosbag2_py")
    use_ros2 = choice == "ros2" or (choice == "auto" and ros2_available)
    if use_ros2 and not ros2_exe:
        raise ValueError("player:=ros2 but there is no `ros2` executable on PATH (source ROS 2, or use player:=mtl)")
    mtl = mtl_exe or package_executable("mtl-perception")
    ns = values.get("namespace", "").strip("/")
    node = f"/{ns}/perception_node" if ns else "/perception_node"
    image_topic = values.get("image_topic") or "/camera/image_raw"
    if use_ros2:
        player = [str(ros2_exe), "bag", "play", bag, "--clock", "--rate", str(rate)]
        player += ["--delay", str(delay + ROS2_DISCOVERY_MARGIN_S)]
    else:
        # the gates saw the subscriptions; the player's own publishers still have to match them
        player = [mtl, "play", "--bag", bag, "--clock", "--rate", str(rate), "--delay", str(delay)]
        player += ["--wait-for-subscribers", "10" if evaluate == "true" else "3"]
    report = values.get("report") or f"replay_report_{Path(bag.rstrip('/')).name}"
    evaluator = [mtl, "live-eval", "--node", node, "--report", report, "--idle-timeout", str(max(10.0, 5.0 / rate))]
    gate = [mtl, "wait-ready", "--topic", image_topic, "--node", node, "--timeout", str(timeout)]
    evaluator_gate = [mtl, "wait-ready", "--topic", GT_SEMANTIC_TOPIC, "--node", EVALUATOR_NODE, "--timeout", "60"]
    return {
        "gate": gate,
        "evaluator": evaluator if evaluate == "true" else None,
        "evaluator_gate": evaluator_gate if evaluate == "true" else None,
        "player": player,
        "node": node,
        "node_overrides": {"use_sim_time": True, "input_reliability": "reliable", "input_depth": 10},
        "report": report,
        "uses_ros2_bag": use_ros2,
    }


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
