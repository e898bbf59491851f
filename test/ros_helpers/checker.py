"""Checker process for the integration tests: records the node's outputs, like RViz would subscribe.

    python test/ros_helpers/checker.py --ns /perception/perception_node --out got.json \
        [--npz arrays.npz] [--ready-file F] [--warmup-file W [--warmup-skip T,...]] [--idle-exit 3]
        [--timeout 60]

Writes, per output topic, one record per message (header, sizes, encodings, extras); with --npz
also the depth and semantic arrays keyed by stamp. Exits after --idle-exit s without messages.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from camera import WARMUP_FRAME_ID  # the sibling script (this directory is on sys.path)

from mtl_perception.ros import harness as H
from mtl_perception.ros.shutdown import exit_process, keep_until_exit


def record(topic: str, recv_ns: int, msg) -> dict:
    r = {"recv_ns": recv_ns, "stamp_ns": H.stamp_ns(msg.header.stamp), "frame_id": msg.header.frame_id}
    if topic in ("semantic", "semantic/confidence", "semantic_color", "depth"):
        r.update(encoding=msg.encoding, height=msg.height, width=msg.width, step=msg.step, bytes=len(msg.data))
    elif topic == "depth/camera_info":
        r.update(height=msg.height, width=msg.width, k=list(map(float, msg.k)))
    elif topic == "points":
        r.update(n=msg.width * msg.height, point_step=msg.point_step, fields=[f.name for f in msg.fields])
    elif topic == "result":
        r.update(
            class_names=list(msg.class_names),
            semantic=[msg.semantic.height, msg.semantic.width, msg.semantic.encoding],
            depth=[msg.depth.height, msg.depth.width, msg.depth.encoding],
            confidence=[msg.confidence.height, msg.confidence.width, msg.confidence.encoding],
            confidence_frame_id=msg.confidence.header.frame_id,
            semantic_frame_id=msg.semantic.header.frame_id,
            decoder=msg.decoder,
            inference_ms=msg.inference_ms,
            info=[msg.camera_info.height, msg.camera_info.width],
        )
    elif topic == "stats":
        for f in msg.get_fields_and_field_types():
            if f != "header":
                r[f] = getattr(msg, f)
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", required=True, help="fully qualified node name, e.g. /perception/perception_node")
    ap.add_argument("--out", required=True)
    ap.add_argument("--npz", default=None)
    ap.add_argument("--ready-file", default=None)
    ap.add_argument("--idle-exit", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--warmup-file", default=None, help="write it once every output answered a warm-up frame")
    ap.add_argument(
        "--warmup-skip", default="", help="comma-separated outputs a warm-up frame gets no answer on (no camera_info)"
    )
    args = ap.parse_args()

    rclpy.init()
    node = rclpy.create_node("test_checker")
    rec = H.Recorder(node, args.ns)
    t0 = time.monotonic()
    while not rec.matched():
        rclpy.spin_once(node, timeout_sec=0.05)
        if time.monotonic() - t0 > args.timeout:
            print("checker: node outputs never matched", file=sys.stderr)
            return 3
    # this reader matched the node's writers; give their side the same moment to match this reader,
    # or the first sample of a topic can go to nobody (the camera's settle time, from this side)
    settle_end = time.monotonic() + 0.6
    while time.monotonic() < settle_end:
        rclpy.spin_once(node, timeout_sec=0.05)
    if args.ready_file:
        Path(args.ready_file).write_text("ready")
    last_n, last_change = 0, time.monotonic()
    warm = args.warmup_file is None
    # not per frame / only with an uncertainty head / as the scenario's warm-up frames make them
    unanswered = {"stats", "depth/uncertainty", *filter(None, args.warmup_skip.split(","))}
    while time.monotonic() - t0 < args.timeout:
        rclpy.spin_once(node, timeout_sec=0.05)
        if not warm:
            with rec.lock:
                warm = all(
                    any(m.header.frame_id == WARMUP_FRAME_ID for _, m in msgs)
                    for t, msgs in rec.messages.items()
                    if t not in unanswered
                )
            if warm:
                Path(args.warmup_file).write_text("warm")
            continue
        n = sum(rec.counts.values())
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        elif n and time.monotonic() - last_change > args.idle_exit:
            break
    # the camera's handshake frames are not part of any scenario
    for msgs in rec.messages.values():
        msgs[:] = [(ns, m) for ns, m in msgs if m.header.frame_id != WARMUP_FRAME_ID]
    out = {t: [record(t, ns, m) for ns, m in msgs] for t, msgs in rec.messages.items()}
    Path(args.out).write_text(json.dumps(out))
    if args.npz:
        arrays = {}
        for topic, enc, dtype in (
            ("depth", "32FC1", np.float32),
            ("semantic", "mono8", np.uint8),
            ("semantic/confidence", "32FC1", np.float32),
        ):
            for _, m in rec.messages[topic]:
                assert m.encoding == enc
                a = np.frombuffer(bytes(m.data), dtype).reshape(m.height, m.width)
                arrays[f"{topic.split('/')[-1]}_{H.stamp_ns(m.header.stamp)}"] = a
        for _, m in rec.messages["result"]:  # the confidence inside ~/result, to compare with the topic's
            c = m.confidence
            if c.height:
                arrays[f"result_confidence_{H.stamp_ns(m.header.stamp)}"] = np.frombuffer(
                    bytes(c.data), np.float32
                ).reshape(c.height, c.width)
        np.savez(args.npz, **arrays)
    keep_until_exit(node)  # left for exit_process: deleting it can hang while the node is up (teardown_on_error)
    return 0


if __name__ == "__main__":
    exit_process(main())
