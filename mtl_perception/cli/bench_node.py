"""``mtl-perception bench-node``: end-to-end latency of a live perception node over real DDS.

Starts ``perception_node`` as its own process, publishes WxH rgb8 frames from this process like a
camera driver (closed loop: the next frame goes out when ~/depth of the previous one arrived, so
latency is measured without self-inflicted queueing) and reports, per frame:

- end_to_end: publish (header stamp) -> receipt of ~/depth here, wall clock (same machine);
- the node's stage timings from ~/stats: conversion, preprocess, inference, postprocess, encode
  (building output messages), publish (publish() calls), node (its own work: everything but
  inference and DDS);
- end_to_end_minus_inference; p50 / p90 / p99 of each; the node's RSS over time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mtl_perception.cli import CLIError

STAGES = ("conversion", "preprocess", "inference", "postprocess", "encode", "publish", "node", "queue", "end_to_end")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench-node",
        help="end-to-end latency / stage timings / RSS of a live perception node",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_node_args(p)
    p.add_argument("--frames", type=int, default=300, help="measured frames (after --warmup)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument(
        "--outputs",
        choices=("depth", "all"),
        default="depth",
        help="subscribe ~/depth (+ ~/stats) only, or every output (the node builds only subscribed ones)",
    )
    p.add_argument(
        "--input-reliability",
        choices=("best_effort", "reliable"),
        default="reliable",
        help="camera publisher and node subscription reliability",
    )
    p.add_argument("--rss-every", type=float, default=1.0, help="RSS sampling period, s")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--json", action="store_true", help="print the JSON report (default: a summary)")
    p.set_defaults(func=run)


def add_node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="model .safetensors (default: the shipped model)")
    p.add_argument("--backend", default="onnxruntime", choices=("auto", "torch", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "int8"))
    p.add_argument("--threads", type=int, default=0, help="inference threads in the node (0: library default)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument(
        "--transport",
        choices=("default", "large_data"),
        default="large_data",
        help="Fast DDS transport, set identically in the node and here",
    )
    p.add_argument("--cache-dir", default=None, help="engine artifact cache of the node")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: random 1..100)")
    p.add_argument("--log", default=None, help="node log file (default: a temp file)")


def checkpoint_path(arg: str | None) -> str:
    from mtl_perception.deploy.artifacts import resolve_checkpoint
    from mtl_perception.deploy.engine import EngineError

    try:
        return str(resolve_checkpoint(arg))
    except EngineError as exc:
        raise CLIError(str(exc)) from exc


def start(args: argparse.Namespace, extra_params: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    """(LiveNode, rclpy node, env) with this process on the same domain and transport as the node."""
    from mtl_perception.ros import harness as H

    env = H.transport_env(args.transport, args.domain_id or random.randint(1, 100))
    os.environ.update(env)  # before rclpy.init: Fast DDS reads it when the participant is created
    if args.transport == "default":
        os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    params = {"backend": args.backend, "precision": args.precision, "threads": args.threads, **(extra_params or {})}
    if args.cache_dir:
        params["engine_cache_dir"] = args.cache_dir
    cmd = H.node_command(checkpoint_path(args.checkpoint), params=params)
    log = args.log or tempfile.NamedTemporaryFile(prefix="perception_node_", suffix=".log", delete=False).name
    live = H.LiveNode(cmd, env, log)
    try:
        live.wait_ready()
    except (RuntimeError, TimeoutError) as exc:
        live.stop()
        raise CLIError(str(exc).strip().splitlines()[-1] if str(exc).strip() else "perception_node failed") from exc
    import rclpy

    rclpy.init()
    return live, rclpy.create_node("bench_node_driver"), env


def run(args: argparse.Namespace) -> int:
    import rclpy

    from mtl_perception.evaluate.replay import percentiles
    from mtl_perception.ros import harness as H

    live, node, _env = start(args, {"input_reliability": args.input_reliability})
    try:
        topics = H.OUTPUT_TOPICS if args.outputs == "all" else ("depth", "stats")
        rec = H.Recorder(node, "/perception/perception_node", topics, keep=False, depth=5)
        if "stats" not in rec.subs:
            raise CLIError("mtl_perception.msg is not generated (run `make setup`): ~/stats is needed for timings")
        cam = H.Camera(node, "/camera/image", "/camera/camera_info", reliable=args.input_reliability == "reliable")
        if not H.spin_until(node, rec.matched, 60):
            raise CLIError("the node's outputs never matched this process (transport / domain mismatch?)")
        cam.wait_for_subscriber()
        rgb = H.pattern_frame(args.height, args.width)
        got_depth: dict[int, int] = {}
        got_stats: dict[int, Any] = {}

        def on_msg(topic: str, recv_ns: int, msg: Any) -> None:
            if topic == "depth":
                got_depth[H.stamp_ns(msg.header.stamp)] = recv_ns
            elif topic == "stats":
                got_stats[H.stamp_ns(msg.header.stamp)] = msg

        rec.callbacks.append(on_msg)
        rows, lost, rss = [], 0, []
        t_start = time.monotonic()
        next_rss = 0.0
        total = args.warmup + args.frames
        for i in range(total):
            header = cam.header()
            msg = H.image_message(rgb, "rgb8", header)
            header.stamp = H.to_stamp(time.time_ns())  # stamp after building: latency counts from publish
            msg.header = header
            s = H.stamp_ns(header.stamp)
            cam.info.publish(H.camera_info_message(args.height, args.width, header))
            cam.image.publish(msg)
            ok = H.spin_until(node, lambda s=s: s in got_depth and s in got_stats, 5.0)
            now = time.monotonic() - t_start
            if i and i % 200 == 0:
                print(f"bench-node: {i}/{total} frames, {now:.0f} s, lost {lost}", file=sys.stderr, flush=True)
            if now >= next_rss:
                rss.append((round(now, 2), i, round(live.rss_mb(), 1)))
                next_rss = now + args.rss_every
            if not ok:
                lost += 1
                print(f"bench-node: frame {i} not answered within 5 s", file=sys.stderr, flush=True)
                continue
            if i < args.warmup:
                continue
            st = got_stats.pop(s)
            e2e = (got_depth.pop(s) - s) / 1e6
            rows.append(
                {
                    "end_to_end": e2e,
                    "end_to_end_minus_inference": e2e - st.inference_ms,
                    **{k: getattr(st, f"{k}_ms") for k in STAGES if k != "end_to_end"},
                    "node_end_to_end": st.end_to_end_ms,
                }
            )
        rss.append((round(time.monotonic() - t_start, 2), total, round(live.rss_mb(), 1)))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        rc = live.stop()
    keys = ["end_to_end", "end_to_end_minus_inference", *[k for k in STAGES if k != "end_to_end"], "node_end_to_end"]
    after_warmup = [r for r in rss if r[1] >= args.warmup] or rss
    rss0, rss1 = after_warmup[0][2], rss[-1][2]
    report = {
        "command": "bench-node",
        "frames": args.frames,
        "warmup": args.warmup,
        "measured": len(rows),
        "lost": lost,
        "size": [args.height, args.width],
        "encoding": "rgb8",
        "transport": args.transport,
        "outputs": args.outputs,
        "backend": args.backend,
        "precision": args.precision,
        "threads": args.threads,
        "checkpoint": checkpoint_path(args.checkpoint),
        "latency_ms": {k: percentiles([r[k] for r in rows]) for k in keys},
        "rss_mb": {
            "after_warmup": rss0,
            "end": rss1,
            "peak": max(r[2] for r in rss),
            "growth_pct": 100.0 * (rss1 - rss0) / rss0 if rss0 else float("nan"),
            "samples": rss,
        },
        "node_exit_code": rc,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg": os.getloadavg(),
        },
        "node_log": str(live.log_path),
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        print(text)
    else:
        lat = report["latency_ms"]
        print(f"{len(rows)} frames {args.width}x{args.height} rgb8, transport {args.transport}, lost {lost}")
        for k in keys:
            if lat.get(k):
                print(f"  {k:28s} p50 {lat[k]['p50']:8.2f}  p90 {lat[k]['p90']:8.2f}  p99 {lat[k]['p99']:8.2f} ms")
        r = report["rss_mb"]
        print(
            f"  node RSS {r['after_warmup']:.0f} -> {r['end']:.0f} MB ({r['growth_pct']:+.1f}%), peak {r['peak']:.0f}"
        )
    return 0 if rows else 1
