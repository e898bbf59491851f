"""The perception node under load and faults, and a live soak, over real DDS.

``mtl-perception bench-node --faults [SCENARIO ...]`` starts one ``perception_node`` process per
scenario and drives it from this process like a camera driver and a viewer (camera publisher,
subscribers of ``~/depth``, ``~/stats`` and ``/diagnostics``, a parameter client); helper
subscriber processes (``python -m mtl_perception.ros.fault_bench peer``) play the slow and the
vanishing subscriber. Scenarios (``SCENARIOS``):

- ``slow_subscriber``: a subscriber process whose callback sleeps (reliable, depth 1) on ~/depth
  and ~/result; the driver (a normal subscriber) must be served as before.
- ``subscriber_killed``: a subscriber process on every image output is SIGKILLed mid-stream.
- ``flood``: images at 4x the node's processing rate (measured in the warm-up).
- ``camera_info_stops``: camera_info stops while images flow, then comes back.
- ``clock_jump``: ``use_sim_time`` with a /clock that jumps back (and the stamps with it), a single
  out-of-order frame, then image stamps that go back for good without the clock.
- ``invalid_params``: SetParameters with wrong types, out-of-range numbers, unknown choices,
  read-only and undeclared names while images flow.

Every scenario starts with a closed-loop warm-up (the RSS baseline and the node's per-frame
time), ends with one fresh frame that must be answered ("answers the latest frame"), and reports
frames sent / answered, the node's counters from its last ~/stats and from /diagnostics, the
identity frames_received = processed + dropped_stale + dropped_invalid + failed, the frames the
node never received (sent - received, and how many of them it counted in frames_lost_input),
RSS start / end / peak and end-to-end latency (send -> ~/depth received) p50 / p99 / max.

``mtl-perception bench-node --soak SECONDS --rate HZ``: one camera open loop for SECONDS after
``--settle`` s; RSS start / end / peak / growth and its least-squares slope (MB per hour),
end-to-end latency p50 / p99 / max, frames sent / answered / lost and the node's counters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mtl_perception.atomic_io import atomic_write_json
from mtl_perception.ros.shutdown import bounded_teardown, exit_process, keep_until_exit
from mtl_perception.ros.stats import COUNTERS

SCENARIOS = ("slow_subscriber", "subscriber_killed", "flood", "camera_info_stops", "clock_jump", "invalid_params")
FQN = "/perception/perception_node"
IMAGE_TOPICS = ("depth", "semantic", "semantic_color", "semantic/confidence", "points", "result")
DROP_COUNTERS = ("frames_dropped_stale", "frames_dropped_invalid", "frames_failed")


def _percentiles(values: list[float]) -> dict[str, float]:
    from mtl_perception.evaluate.replay import percentiles

    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in percentiles(values).items()}


# ---------------------------------------------------------------------------------------------- driver
class Driver:
    """This process's rclpy node in the default context, spun in a thread (``harness.SpinningNode``)."""

    def __init__(self) -> None:
        from mtl_perception.ros import harness as H

        self._spinning = H.SpinningNode("fault_bench_driver")
        self.node = self._spinning.node

    def close(self, destroy: bool = False) -> None:
        """Stop spinning. The node is destroyed only with ``destroy``: a command leaves its participant
        for ``exit_process`` (deleting it can hang while a perception node is up: teardown_on_error)."""
        self._spinning.stop_spinning()
        if destroy:
            bounded_teardown(self.node)
        else:
            keep_until_exit(self.node)


class Session:
    """One node process and this process's camera / recorders for one scenario."""

    def __init__(
        self, driver: Driver, args: argparse.Namespace, name: str, params: dict[str, Any], log_dir: Path
    ) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        from mtl_perception.cli.bench_node import checkpoint_path
        from mtl_perception.msg import PerceptionStats
        from mtl_perception.ros import harness as H

        self.H = H
        self.args = args
        self.name = name
        self.driver = driver
        node = driver.node
        self.node = node
        base = {
            "backend": args.backend,
            "precision": args.precision,
            "threads": args.threads,
            "input_reliability": args.input_reliability,
        }
        if args.cache_dir:
            base["engine_cache_dir"] = args.cache_dir
        self.log_dir = log_dir
        self.live = H.LiveNode(
            H.node_command(checkpoint_path(args.checkpoint), params={**base, **params}),
            dict(os.environ),
            log_dir / f"{name}.node.log",
            timeout=600,
        )
        self.lock = threading.Lock()
        self.sent: dict[int, int] = {}  # stamp -> send wall time ns
        self.sent_order: list[int] = []
        self.answers: dict[int, int] = {}  # stamp -> ~/depth receipt wall time ns
        self.answer_order: list[int] = []
        self.info_answers: set[int] = set()
        self.stats: list[tuple[int, Any]] = []
        self.diag: list[tuple[int, int, str, dict[str, str]]] = []  # (recv ns, level, message, values)
        self.rss: list[tuple[float, float]] = []
        self._rss_stop = threading.Event()
        self._subs: list[Any] = []
        self._pubs: list[Any] = []
        self.peers: list[subprocess.Popen] = []
        self.cleanups: list[Any] = []
        self.marks: list[dict[str, Any]] = []  # RSS at phase boundaries
        self.sim_offset = 0
        self.t0 = time.monotonic()
        self.warm_index = 0
        try:
            self.live.wait_ready()
        except (RuntimeError, TimeoutError):
            self.live.stop()
            raise
        self._rss_thread = threading.Thread(target=self._sample_rss, daemon=True)
        self._rss_thread.start()
        self.cam = H.Camera(node, "/camera/image", "/camera/camera_info", reliable=args.input_reliability == "reliable")
        self._pubs += [self.cam.image, self.cam.info]
        q = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self._subs.append(node.create_subscription(Image, f"{FQN}/depth", self._on_depth, q))
        self._subs.append(node.create_subscription(CameraInfo, f"{FQN}/depth/camera_info", self._on_info, q))
        self._subs.append(node.create_subscription(PerceptionStats, f"{FQN}/stats", self._on_stats, q))
        self._subs.append(node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10))
        deadline = time.monotonic() + 60
        while any(s.get_publisher_count() < 1 for s in self._subs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the node's outputs never matched this process")
            time.sleep(0.05)
        self.cam.wait_for_subscriber()
        self.rgb = H.pattern_frame(args.height, args.width)
        self.frame = H.image_message(self.rgb, "rgb8", self.cam.header())
        self.stamp_source = time.time_ns  # sim-time scenarios replace it

    # ------------------------------------------------------------------ callbacks (executor thread)
    def _on_depth(self, msg: Any) -> None:
        now = time.time_ns()
        s = self.H.stamp_ns(msg.header.stamp)
        with self.lock:
            self.answers[s] = now
            self.answer_order.append(s)

    def _on_info(self, msg: Any) -> None:
        with self.lock:
            self.info_answers.add(self.H.stamp_ns(msg.header.stamp))

    def _on_stats(self, msg: Any) -> None:
        with self.lock:
            self.stats.append((time.time_ns(), msg))

    def _on_diag(self, msg: Any) -> None:
        now = time.time_ns()
        for st in msg.status:
            if st.name.startswith("perception_node"):
                with self.lock:
                    self.diag.append(
                        (now, int.from_bytes(st.level, "little"), st.message, {v.key: v.value for v in st.values})
                    )

    def _sample_rss(self) -> None:
        while not self._rss_stop.is_set():
            self.rss.append((round(time.monotonic() - self.t0, 2), round(self.live.rss_mb(), 1)))
            self._rss_stop.wait(self.args.rss_every)

    # ------------------------------------------------------------------ camera side
    def send(self, stamp_ns: int | None = None, info: bool = True) -> int:
        H = self.H
        ns = self.stamp_source() if stamp_ns is None else stamp_ns
        header = self.cam.header(ns=ns)
        self.frame.header = header
        if info:
            self.cam.info.publish(H.camera_info_message(self.args.height, self.args.width, header))
        with self.lock:
            self.sent[ns] = time.time_ns()
            self.sent_order.append(ns)
        self.cam.image.publish(self.frame)
        return ns

    def wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def answered(self, stamp: int) -> bool:
        with self.lock:
            return stamp in self.answers

    def warmup(self, n: int) -> float:
        """n frames closed loop; returns the node's per-frame time (ms, median of receipt -> published)."""
        for _ in range(n):
            s = self.send()
            self.wait(lambda s=s: self.answered(s), 10.0)
        self.wait(lambda: self.stats_count() >= 1, 5.0)
        with self.lock:
            work = [m.end_to_end_ms - m.queue_ms for _, m in self.stats]
            self.warm_index = len(self.rss)
        work.sort()
        return work[len(work) // 2] if work else float("nan")

    def mark(self, label: str) -> None:
        """RSS now, at a phase boundary: step changes (e.g. outputs built for a new subscriber) vs drift."""
        self.marks.append(
            {"at": label, "t_s": round(time.monotonic() - self.t0, 1), "rss_mb": round(self.live.rss_mb(), 1)}
        )

    def stats_count(self) -> int:
        with self.lock:
            return len(self.stats)

    def stream(self, rate: float, duration: float, info: bool = True, every: Any = None) -> list[int]:
        """Open loop at ``rate`` Hz for ``duration`` s; ``every(k)`` is called before frame k."""
        stamps = []
        t0, k = time.monotonic(), 0
        period = 1.0 / rate
        while time.monotonic() < t0 + duration:
            if every is not None:
                every(k)
            stamps.append(self.send(info=info))
            k += 1
            delay = t0 + k * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return stamps

    def final(self, tries: int = 3, timeout: float = 10.0) -> dict[str, Any]:
        """One fresh frame after everything else: answered? then the node's counters after it."""
        time.sleep(0.5)  # the last frames through the node
        for attempt in range(1, tries + 1):
            s = self.send()
            if self.wait(lambda s=s: self.answered(s), timeout):
                self.wait(lambda s=s: self._stats_for(s) is not None, 5.0)
                return {"answered": True, "attempts": attempt, "stamp": s}
        return {"answered": False, "attempts": tries, "stamp": None}

    def _stats_for(self, stamp: int) -> Any:
        with self.lock:
            for _, m in reversed(self.stats):
                if self.H.stamp_ns(m.header.stamp) == stamp:
                    return m
        return None

    def counters(self) -> dict[str, int]:
        with self.lock:
            last = self.stats[-1][1] if self.stats else None
        return {k: int(getattr(last, k)) for k in COUNTERS if last is not None and hasattr(last, k)}

    def diag_counters(self, timeout: float = 6.0) -> dict[str, Any]:
        """The last /diagnostics of the node once its counters equal ~/stats' (they publish at 1 Hz)."""
        want = self.counters()
        got: dict[str, Any] = {}

        def matches() -> bool:
            nonlocal got
            with self.lock:
                if not self.diag:
                    return False
                _, level, message, values = self.diag[-1]
            got = {"level": level, "message": message, "counters": {k: int(values[k]) for k in want if k in values}}
            return got["counters"] == want

        ok = self.wait(matches, timeout)
        return {**got, "matches_stats": ok}

    def diag_levels(self, since_ns: int = 0, until_ns: int | None = None) -> list[tuple[int, str]]:
        with self.lock:
            rows = [(lv, m) for t, lv, m, _ in self.diag if t >= since_ns and (until_ns is None or t <= until_ns)]
        out: list[tuple[int, str]] = []
        for r in rows:
            if r not in out:
                out.append(r)
        return out

    def phase(self, stamps: list[int]) -> dict[str, Any]:
        with self.lock:
            got = [s for s in stamps if s in self.answers]
            lat = [(self.answers[s] - self.sent[s]) / 1e6 for s in got]
        return {
            "sent": len(stamps),
            "answered": len(got),
            "answered_fraction": round(len(got) / len(stamps), 3) if stamps else None,
            "latency_ms": _percentiles(lat),
        }

    def start_peer(self, topics: list[str], sleep_s: float, depth: int, label: str) -> tuple[subprocess.Popen, Path]:
        out = self.log_dir / f"{self.name}.{label}.json"
        cmd = [sys.executable, "-m", "mtl_perception.ros.fault_bench", "peer", "--ns", FQN, "--out", str(out)]
        cmd += ["--sleep", str(sleep_s), "--depth", str(depth), "--topics", *topics]
        log = open(self.log_dir / f"{self.name}.{label}.log", "w")
        proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.peers.append(proc)
        topic = f"{FQN}/{topics[0]}"
        before = self.node.count_subscribers(topic)
        deadline = time.monotonic() + 60
        while self.node.count_subscribers(topic) <= before or not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: peer {label} did not start ({proc.poll()})")
            time.sleep(0.05)
        time.sleep(0.5)
        return proc, out

    # ------------------------------------------------------------------ report
    def report(self, final: dict[str, Any], extra: dict[str, Any], measured: list[int]) -> dict[str, Any]:
        c = self.counters()
        diag = self.diag_counters()
        with self.lock:
            n_sent = len(self.sent_order)
            index = {st: i for i, st in enumerate(self.sent_order)}
            answered_in_order = [index[st] for st in self.answer_order if st in index]
        received = c.get("frames_received", 0)
        rss = self.rss[self.warm_index :] or self.rss
        rss_end = self.live.rss_mb()
        accounted = c.get("frames_processed", 0) + sum(c.get(k, 0) for k in DROP_COUNTERS)
        return {
            "scenario": self.name,
            "frames_sent": n_sent,
            "frames_answered": len([s for s in self.sent if s in self.answers]),
            "answered_latest_frame": final["answered"],
            "final_frame_attempts": final["attempts"],
            "counters": c,
            "drops": {k: c.get(k, 0) for k in (*DROP_COUNTERS, "frames_lost_input")},
            "identity_received_eq_processed_plus_drops": received == accounted,
            "received_minus_processed_and_drops": received - accounted,
            "never_received": n_sent - received,
            "never_received_counted_lost_input": c.get("frames_lost_input", 0),
            # never an older frame answered after a newer one (by send order: the stamps may jump back)
            "answers_in_send_order": answered_in_order == sorted(answered_in_order),
            "diagnostics": diag,
            "latency_ms": self.phase(measured)["latency_ms"],
            "rss_mb": {
                "after_warmup": rss[0][1] if rss else None,
                "end": round(rss_end, 1),
                "peak": max((r[1] for r in rss), default=None),
                "growth": round(rss_end - rss[0][1], 1) if rss else None,
                "at_phase_boundaries": self.marks,
                "samples": [list(r) for r in self.rss],  # (s since the node was ready, MB) incl. warm-up
            },
            **extra,
        }

    def close(self) -> int:
        for f in self.cleanups:
            f()
        for p in self.peers:
            stop_peer(p)
        self._rss_stop.set()
        for s in self._subs:
            self.node.destroy_subscription(s)
        for p in self._pubs:
            self.node.destroy_publisher(p)
        return self.live.stop()


# ---------------------------------------------------------------------------------------------- scenarios
def _rate(s: Session, work_ms: float, factor: float, cap: float) -> float:
    node_rate = 1000.0 / work_ms if work_ms and math.isfinite(work_ms) and work_ms > 0 else cap
    return max(0.5, min(cap, factor * node_rate))


def slow_subscriber(s: Session, d: float, work_ms: float) -> dict[str, Any]:
    rate = _rate(s, work_ms, 0.6, s.args.rate)
    base = s.stream(rate, d)
    t_slow = time.time_ns()
    peer, out = s.start_peer(["depth", "result"], sleep_s=2.0, depth=1, label="slow_peer")
    with s.lock:
        n_stats = len(s.stats)
    s.mark("slow subscriber joined")
    slow = s.stream(rate, d)
    s.mark("end of the slow phase")
    with s.lock:
        publish = [m.publish_ms for _, m in s.stats[n_stats:]]
    peer_rc = stop_peer(peer)  # -9: it did not exit within 20 s of SIGINT and was killed
    got = json.loads(out.read_text())  # written every 0.5 s and at exit
    return {
        "rate_hz": round(rate, 2),
        "phases": {"before_slow_subscriber": s.phase(base), "with_slow_subscriber": s.phase(slow)},
        "slow_subscriber": {
            "qos": "reliable, depth 1",
            "callback_sleep_s": 2.0,
            "received": got["counts"],
            "exit_code": peer_rc,
        },
        "node_publish_ms_with_slow_subscriber": _percentiles(publish),
        "diag_levels": s.diag_levels(t_slow),
        "_measured": base + slow,
    }


def stop_peer(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGINT, then SIGKILL if it has not exited after ``timeout`` s (a loaded machine)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def subscriber_killed(s: Session, d: float, work_ms: float) -> dict[str, Any]:
    rate = _rate(s, work_ms, 0.6, s.args.rate)
    topic = f"{FQN}/points"
    alone = s.node.count_subscribers(topic)
    peer, out = s.start_peer(list(IMAGE_TOPICS), sleep_s=0.0, depth=2, label="killed_peer")
    s.mark("subscriber joined")
    before = s.stream(rate, d)
    s.mark("before SIGKILL")
    peer.kill()  # SIGKILL: no goodbye to DDS, its readers stay matched until their lease expires
    peer.wait(5)
    t_kill = time.monotonic()
    gone: list[float] = []

    def watch(k: int) -> None:  # when does the dead reader leave the graph (the node stops building for it)?
        if not gone and s.node.count_subscribers(topic) <= alone:
            gone.append(time.monotonic() - t_kill)

    after: list[int] = []
    limit = t_kill + 2 * d + s.args.lease_wait
    while time.monotonic() < limit and not (gone and time.monotonic() >= t_kill + max(2 * d, gone[0] + d)):
        after += s.stream(rate, 1.0, every=watch)
    s.mark("end")
    after_gone = [st for st in after if gone and (s.sent[st] - t_kill_ns(t_kill)) / 1e9 > gone[0]]
    got = json.loads(out.read_text()) if out.exists() else {}
    return {
        "rate_hz": round(rate, 2),
        "phases": {
            "before_kill": s.phase(before),
            "after_sigkill": s.phase(after),
            "after_the_dead_reader_left_the_graph": s.phase(after_gone),
        },
        "killed_subscriber": {
            "topics": list(IMAGE_TOPICS),
            "qos": "reliable, depth 2",
            "received_before_kill": got.get("counts"),
        },
        "dead_reader_left_the_graph_after_s": round(gone[0], 1) if gone else None,
        "streamed_after_kill_s": round(time.monotonic() - t_kill, 1),
        "_measured": before + after,
    }


def t_kill_ns(t_monotonic: float) -> int:
    """Wall-clock ns of a monotonic time (send times are wall clock)."""
    return time.time_ns() - int((time.monotonic() - t_monotonic) * 1e9)


def flood(s: Session, d: float, work_ms: float) -> dict[str, Any]:
    node_rate = 1000.0 / work_ms
    target = 4.0 * node_rate
    rate = min(target, s.args.flood_max_rate)
    with s.lock:
        n_stats = len(s.stats)
    c0 = s.counters()
    t0 = time.monotonic()
    s.mark("flood starts")
    stamps = s.stream(rate, d)
    took = time.monotonic() - t0
    s.mark("flood ends")
    time.sleep(1.0)
    c1 = s.counters()
    with s.lock:
        rows = [m for _, m in s.stats[n_stats:]]
    fps = len(rows) / took if took else 0.0
    return {
        "node_rate_hz_warmup": round(node_rate, 2),
        "target_rate_hz": round(target, 2),
        "achieved_rate_hz": round(len(stamps) / took, 2),
        "rate_over_node_rate": round(len(stamps) / took / node_rate, 2),
        "processed_per_s_during_flood": round(fps, 2),
        "phases": {"flood": s.phase(stamps)},
        "flood_counters": {k: c1.get(k, 0) - c0.get(k, 0) for k in c1},
        "node_queue_ms": _percentiles([m.queue_ms for m in rows]),
        "_measured": stamps,
    }


def camera_info_stops(s: Session, d: float, work_ms: float) -> dict[str, Any]:
    rate = _rate(s, work_ms, 0.6, s.args.rate)
    timeout = s.args.camera_info_timeout
    with_info = s.stream(rate, d)
    c_a = s.counters()
    t_stop = time.time_ns()
    s.mark("camera_info stops")
    without = s.stream(rate, timeout + d, info=False)
    s.mark("camera_info back")
    t_back = time.time_ns()
    c_b = s.counters()
    again = s.stream(rate, d)
    time.sleep(1.5)  # one diagnostics period with fresh camera_info
    c_c = s.counters()
    with s.lock:
        info_without = sum(1 for st in without if st in s.info_answers)
    log = s.live.log()
    return {
        "rate_hz": round(rate, 2),
        "camera_info_timeout_s": timeout,
        "phases": {
            "with_camera_info": s.phase(with_info),
            "camera_info_stopped": s.phase(without),
            "camera_info_back": s.phase(again),
        },
        "frames_stale_camera_info_by_phase": [
            c_a.get("frames_stale_camera_info", 0),
            c_b.get("frames_stale_camera_info", 0),
            c_c.get("frames_stale_camera_info", 0),
        ],
        "depth_camera_info_published_while_stopped": info_without,
        "diag_levels_while_stopped": s.diag_levels(t_stop, t_back + int(1.5e9)),
        "diag_level_after_back": s.diag_levels(time.time_ns() - int(1.2e9)),
        "stale_warnings_logged": log.count("no camera_info on"),
        "flows_again_logged": "flows again" in log,
        "_measured": with_info + without + again,
    }


def start_sim_clock(s: Session) -> None:
    """/clock from this process (sim time from 1000 s, 100 Hz); the images are stamped with it."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    H = s.H
    clock_pub = s.node.create_publisher(Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    s._pubs.append(clock_pub)
    s.sim_offset = 1_000_000_000_000 - time.monotonic_ns()
    stop = threading.Event()

    def sim_now() -> int:
        return time.monotonic_ns() + s.sim_offset

    def tick() -> None:
        while not stop.is_set():
            clock_pub.publish(Clock(clock=H.to_stamp(sim_now())))
            time.sleep(0.01)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    s.cleanups.append(lambda: (stop.set(), ticker.join(2)))
    s.sim_now = sim_now
    s.stamp_source = sim_now
    time.sleep(1.0)  # the node follows /clock


def clock_jump(s: Session, d: float, work_ms: float) -> dict[str, Any]:
    """use_sim_time with /clock from this process (``start_sim_clock``)."""
    sim_now = s.sim_now
    rate = _rate(s, work_ms, 0.5, min(s.args.rate, 10.0))
    normal = s.stream(rate, d)
    c1 = s.counters()
    t_jump = time.time_ns()
    jump_s = 3.0  # below max_stamp_regression (5 s): before, every frame was dropped until the stamps caught up
    s.sim_offset -= int(jump_s * 1e9)  # /clock and the stamps jump back together (a short bag looping)
    time.sleep(0.05)
    after_jump = s.stream(rate, d)
    c2 = s.counters()
    with s.lock:
        diag_after_jump = sum(1 for t, *_ in s.diag if t > t_jump)
    # one frame older than the last one (a reordered / duplicate frame): dropped
    older = s.send(stamp_ns=sim_now() - 500_000_000)
    time.sleep(max(0.5, 3 * work_ms / 1e3))
    after_single = s.stream(rate, d / 2)
    c3 = s.counters()
    # the image stamps go back 2 s for good, the clock does not (a driver restarted on another clock)
    s.stamp_source = lambda: sim_now() - 2_000_000_000
    back_for_good = s.stream(rate, d)
    c4 = s.counters()
    s.stamp_source = sim_now
    # no images while /clock jumps back 3 times: /diagnostics (steady timer) keeps publishing
    t_stall = time.time_ns()
    for _ in range(3):
        s.sim_offset -= 1_000_000_000
        time.sleep(1.0)
    with s.lock:
        diag_while_clock_jumps = sum(1 for t, *_ in s.diag if t > t_stall)

    def delta(a: dict[str, int], b: dict[str, int], k: str) -> int:
        return b.get(k, 0) - a.get(k, 0)

    phases = ("clock_jump", c1, c2), ("single_out_of_order", c2, c3), ("stamps_back_for_good", c3, c4)
    return {
        "rate_hz": round(rate, 2),
        "clock_jump_back_s": jump_s,
        "phases": {
            "normal": s.phase(normal),
            "after_clock_jump": s.phase(after_jump),
            "after_single_out_of_order": s.phase(after_single),
            "stamps_back_2s_for_good": s.phase(back_for_good),
        },
        "single_out_of_order_answered": s.answered(older),
        "stamp_resets_by_phase": {n: delta(a, b, "stamp_resets") for n, a, b in phases},
        "dropped_invalid_by_phase": {n: delta(a, b, "frames_dropped_invalid") for n, a, b in phases},
        "diagnostics_after_jump": diag_after_jump,
        "diagnostics_while_clock_jumps_3s": diag_while_clock_jumps,
        "diag_levels": s.diag_levels(t_jump),
        "_measured": normal + after_jump + after_single + back_for_good,
    }


BAD_PARAMS: tuple[tuple[str, Any, str], ...] = (
    ("point_stride", "four", "wrong type (string for an integer)"),
    ("point_stride", 0, "out of range"),
    ("point_stride", 1000, "out of range"),
    ("color_blend", 1.5, "out of range"),
    ("color_blend", float("nan"), "not a number"),
    ("color_blend", 1, "wrong type (integer for a double)"),
    ("max_stamp_regression", -1.0, "out of range"),
    ("camera_info_timeout", float("inf"), "out of range"),
    ("publish_points", "yes", "wrong type (string for a bool)"),
    ("decoder", "segformer", "unknown decoder"),
    ("precision", "fp8", "unknown precision"),
    ("backend", "tpu", "unknown backend"),
    ("threads", -1, "out of range"),
    ("output_resolution", "half", "unknown choice"),
    ("input_depth", 5, "read-only"),
    ("cameras", ["left"], "read-only"),
    ("no_such_parameter", 1, "undeclared"),
)


def invalid_params(s: Session, d: float, work_ms: float) -> dict[str, Any]:
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    rate = _rate(s, work_ms, 0.6, s.args.rate)
    client = AsyncParameterClient(s.node, FQN)
    if not client.wait_for_services(timeout_sec=30):
        raise RuntimeError("invalid_params: the node's parameter services are not available")

    def call(future: Any, timeout: float = 20.0) -> Any:
        s.wait(future.done, timeout)
        return future.result() if future.done() else None

    names = sorted({n for n, _, _ in BAD_PARAMS if n != "no_such_parameter"})
    before = call(client.get_parameters(names))
    results: list[dict[str, Any]] = []

    def barrage(k: int) -> None:
        if k % 2 or k // 2 >= len(BAD_PARAMS):
            return
        name, value, kind = BAD_PARAMS[k // 2]
        res = call(client.set_parameters([Parameter(name, value=value)]))
        r = res.results[0] if res is not None else None
        results.append(
            {
                "name": name,
                "value": repr(value),
                "kind": kind,
                "successful": None if r is None else bool(r.successful),
                "reason": None if r is None else r.reason,
            }
        )

    c0 = s.counters()
    stamps = s.stream(rate, max(d, 2 * len(BAD_PARAMS) / rate + 1.0), every=barrage)
    after = call(client.get_parameters(names))
    from rclpy.parameter import parameter_value_to_python

    unchanged = (
        before is not None
        and after is not None
        and [parameter_value_to_python(v) for v in before.values]
        == [parameter_value_to_python(v) for v in after.values]
    )
    ok = call(client.set_parameters([Parameter("point_stride", value=8)]))
    valid_accepted = bool(ok is not None and ok.results[0].successful)
    more = s.stream(rate, d / 2)
    c1 = s.counters()
    return {
        "rate_hz": round(rate, 2),
        "requests": results,
        "rejected": sum(1 for r in results if r["successful"] is False),
        "rejected_with_reason": sum(1 for r in results if r["successful"] is False and r["reason"]),
        "values_unchanged": unchanged,
        "valid_change_accepted_after": valid_accepted,
        "parameter_rejections_counted": c1.get("parameter_rejections", 0) - c0.get("parameter_rejections", 0),
        "engine_switches": c1.get("engine_switches", 0),
        "engine_switch_failures": c1.get("engine_switch_failures", 0),
        "phases": {"during_bad_requests": s.phase(stamps), "after": s.phase(more)},
        "_measured": stamps + more,
    }


SCENARIO_FUNCS = {
    "slow_subscriber": (slow_subscriber, {}),
    "subscriber_killed": (subscriber_killed, {}),
    "flood": (flood, {}),
    "camera_info_stops": (camera_info_stops, None),  # params from args
    "clock_jump": (clock_jump, {"use_sim_time": True}),
    "invalid_params": (invalid_params, {}),
}


def run_scenario(driver: Driver, args: argparse.Namespace, name: str, log_dir: Path) -> dict[str, Any]:
    func, params = SCENARIO_FUNCS[name]
    if params is None:
        params = {"camera_info_timeout": args.camera_info_timeout}
    t0 = time.monotonic()
    print(f"bench-node --faults: {name} ...", file=sys.stderr, flush=True)
    s = Session(driver, args, name, params, log_dir)
    try:
        if name == "clock_jump":
            start_sim_clock(s)
        work_ms = s.warmup(args.warmup)
        extra = func(s, args.phase, work_ms)
        final = s.final()
        measured = extra.pop("_measured")
        rep = s.report(final, extra, measured)
        rep["node_work_ms_warmup"] = round(work_ms, 2)
        rep["node_params"] = params
    finally:
        rc = s.close()
    log = s.live.log()
    rep["node_exit_code"] = rc
    rep["node_alive_until_stopped"] = rc == 0
    rep["node_log_tracebacks"] = log.count("Traceback")
    rep["node_log"] = str(s.live.log_path)
    rep["wall_s"] = round(time.monotonic() - t0, 1)
    return rep


# ---------------------------------------------------------------------------------------------- CLIs
def _setup_env(args: argparse.Namespace) -> None:
    from mtl_perception.ros import harness as H

    env = H.transport_env(args.transport, args.domain_id or random.randint(1, 100))
    os.environ.update(env)  # before rclpy.init: Fast DDS reads it when the participant is created
    if args.transport == "default":
        os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)


def _report_header(args: argparse.Namespace, command: str, checkpoint: str) -> dict[str, Any]:
    """What every --faults / --soak report starts with: the command and the node's set-up."""
    return {
        "command": command,
        "argv": sys.argv[1:],
        "size": [args.height, args.width],
        "checkpoint": checkpoint,
        "backend": args.backend,
        "precision": args.precision,
        "threads": args.threads,
        "transport": args.transport,
        "input_reliability": args.input_reliability,
    }


def run_faults(args: argparse.Namespace) -> int:
    from mtl_perception.cli import CLIError
    from mtl_perception.cli.bench_node import checkpoint_path, emit_report, machine_summary

    names = list(args.faults) or list(SCENARIOS)
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        raise CLIError(f"--faults {bad[0]!r}: not a scenario; choose from {', '.join(SCENARIOS)} (none = all)")
    ckpt = checkpoint_path(args.checkpoint)
    _setup_env(args)
    log_dir = Path(args.log or tempfile.mkdtemp(prefix="bench_faults_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    driver = Driver()
    scenarios = {}
    try:
        for name in names:
            scenarios[name] = run_scenario(driver, args, name, log_dir)
    finally:
        driver.close()
    report = {
        **_report_header(args, "mtl-perception bench-node --faults " + " ".join(names), ckpt),
        "phase_s": args.phase,
        "scenarios": scenarios,
        "wall_s": round(time.monotonic() - t0, 1),
        "machine": machine_summary(),
        "logs": str(log_dir),
    }
    if not emit_report(args, report):
        for name, r in scenarios.items():
            lat = r["latency_ms"]
            print(
                f"{name:18s} sent {r['frames_sent']:5d} answered {r['frames_answered']:5d} latest "
                f"{'yes' if r['answered_latest_frame'] else 'NO '} drops {r['drops']} identity "
                f"{'ok' if r['identity_received_eq_processed_plus_drops'] else 'BROKEN'} RSS "
                f"{r['rss_mb']['after_warmup']} -> {r['rss_mb']['end']} MB, p50 {lat.get('p50')} "
                f"p99 {lat.get('p99')} ms"
            )
    ok = all(r["answered_latest_frame"] and r["node_exit_code"] == 0 for r in scenarios.values())
    return 0 if ok else 1


def run_soak(args: argparse.Namespace) -> int:
    """One camera open loop through DDS for ``args.soak`` s at ``args.rate`` Hz."""
    import numpy as np

    from mtl_perception.cli import CLIError
    from mtl_perception.cli.bench_node import checkpoint_path, emit_report, machine_summary

    if args.rate <= 0:
        raise CLIError(f"--rate must be > 0 for --soak, got {args.rate}")
    ckpt = checkpoint_path(args.checkpoint)
    _setup_env(args)
    log_dir = Path(args.log or tempfile.mkdtemp(prefix="bench_soak_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    driver = Driver()
    t_start = time.monotonic()
    try:
        s = Session(driver, args, "soak", {"camera_info_timeout": args.camera_info_timeout}, log_dir)
        try:
            s.warmup(args.warmup)
            settle = s.stream(args.rate, args.settle)
            with s.lock:
                s.warm_index = len(s.rss)
            t_measure = time.monotonic()
            stamps: list[int] = []
            next_note = t_measure + 60
            while time.monotonic() < t_measure + args.soak:
                chunk = min(10.0, t_measure + args.soak - time.monotonic())
                stamps += s.stream(args.rate, chunk)
                if time.monotonic() >= next_note:
                    p = s.phase(stamps)
                    print(
                        f"bench-node --soak: {time.monotonic() - t_measure:.0f}/{args.soak:.0f} s, sent {p['sent']}, "
                        f"answered {p['answered']}, RSS {s.live.rss_mb():.0f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
                    next_note += 60
            measured_s = time.monotonic() - t_measure
            final = s.final()
            rep = s.report(final, {}, stamps)
            rss = [r for r in s.rss[s.warm_index :]]
        finally:
            rc = s.close()
    finally:
        driver.close()
    slope = None
    if len(rss) >= 3:
        t = np.array([r[0] for r in rss]) / 3600.0
        y = np.array([r[1] for r in rss])
        slope = float(np.polyfit(t - t[0], y, 1)[0])
    p = s.phase(stamps)
    r0 = rep["rss_mb"]["after_warmup"]
    report = {
        **_report_header(args, f"mtl-perception bench-node --soak {args.soak:g} --rate {args.rate:g}", ckpt),
        "rate_hz": args.rate,
        "settle_s": args.settle,
        "measured_s": round(measured_s, 1),
        "frames_sent": p["sent"],
        "frames_answered": p["answered"],
        "frames_lost": p["sent"] - p["answered"],
        "settle_frames_sent": len(settle),
        "end_to_end_ms": p["latency_ms"],
        "rss_mb": {
            "start": r0,
            "end": rep["rss_mb"]["end"],
            "peak": rep["rss_mb"]["peak"],
            "growth": rep["rss_mb"]["growth"],
            "growth_pct": round(100.0 * rep["rss_mb"]["growth"] / r0, 2) if r0 else None,
            "slope_mb_per_hour": round(slope, 2) if slope is not None else None,
            "samples": rss,
        },
        "answered_latest_frame": rep["answered_latest_frame"],
        "node_counters": rep["counters"],
        "identity_received_eq_processed_plus_drops": rep["identity_received_eq_processed_plus_drops"],
        "never_received": rep["never_received"],
        "diagnostics": rep["diagnostics"],
        "node_exit_code": rc,
        "node_log": rep.get("node_log", str(s.live.log_path)),
        "wall_s": round(time.monotonic() - t_start, 1),
        "machine": machine_summary(),
    }
    if not emit_report(args, report):
        lat, r = report["end_to_end_ms"], report["rss_mb"]
        print(
            f"soak {report['measured_s']} s at {args.rate:g} Hz {args.width}x{args.height}: sent {p['sent']}, answered "
            f"{p['answered']}, lost {report['frames_lost']}; end-to-end p50 {lat.get('p50')} p99 {lat.get('p99')} max "
            f"{lat.get('max')} ms; RSS {r['start']} -> {r['end']} MB (peak {r['peak']}, {r['growth']:+} MB, "
            f"{r['slope_mb_per_hour']} MB/h)"
        )
    return 0 if rep["answered_latest_frame"] and rc == 0 else 1


# ---------------------------------------------------------------------------------------------- peer process
def peer_main(argv: list[str]) -> int:
    """A subscriber process: reliable, ``--depth``, callbacks sleep ``--sleep`` s; counts to ``--out``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions

    from mtl_perception.ros import harness as H

    ap = argparse.ArgumentParser(prog="fault_bench peer")
    ap.add_argument("--ns", required=True)
    ap.add_argument("--topics", nargs="+", required=True)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("fault_peer")
    counts = dict.fromkeys(a.topics, 0)
    types = H.output_types()
    q = QoSProfile(depth=a.depth, reliability=ReliabilityPolicy.RELIABLE)

    def cb(topic: str) -> Any:
        def f(msg: Any) -> None:
            counts[topic] += 1
            if a.sleep:
                time.sleep(a.sleep)

        return f

    subs = [node.create_subscription(types[t], f"{a.ns}/{t}", cb(t), q) for t in a.topics]
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    next_write = 0.0
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)
        if time.monotonic() >= next_write:
            atomic_write_json(a.out, {"counts": counts}, fsync=False, indent=2)
            next_write = time.monotonic() + 0.5
    atomic_write_json(a.out, {"counts": counts}, fsync=False, indent=2)
    for sub in subs:  # the readers leave now (the node sees them go); the participant is left for exit_process
        node.destroy_subscription(sub)
    keep_until_exit(node)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        exit_process(peer_main(sys.argv[2:]))
    sys.exit(f"usage: python -m {__spec__.name if __spec__ else 'fault_bench'} peer --ns NS --topics T ... --out F")
