"""``mtl-perception bench-node``: end-to-end latency of a live perception node over real DDS.

Starts ``perception_node`` as its own process, publishes WxH rgb8 frames from this process like a
camera driver (closed loop: the next frame goes out when ~/depth of the previous one arrived, so
latency is measured without self-inflicted queueing) and reports, per frame:

- end_to_end: publish (header stamp) -> receipt of ~/depth here, wall clock (same machine);
- the node's stage timings from ~/stats: conversion, preprocess, inference, postprocess, encode
  (building output messages), publish (publish() calls), node (its own work: everything but
  inference and DDS);
- end_to_end_minus_inference; p50 / p90 / p99 of each; the node's RSS over time.

``--cameras N`` (surround view, e.g. 6): N synchronised cameras publish open loop at ``--rate`` Hz
each, first into ONE node serving all N (``cameras:=[cam0, ...]``, one engine, the latest frame of
every camera batched per round), then into N single-camera nodes, in the same run on the same
machine. Reported per mode: delivered frames/s (total and per camera), per-camera end-to-end
latency p50/p99 (stamp -> ~/<camera>/depth received here), frames lost (sent, never answered:
the latest-frame policy under overload), and the summed RSS of the node processes; plus the
throughput ratio one node / N nodes.

``--switch NAME=VALUE`` (repeatable, e.g. ``--switch decoder=baseline``): runtime model switch.
One camera publishes open loop at ``--rate`` Hz; after ``--settle`` s the parameters are set on
the running node, which builds the new engine in the background and swaps it in between frames.
Frames flow for ``--duration`` s and, if the new engine has not answered by then, up to 60 s longer
(until it has answered for 2 s). Reported: request -> first answer from the new engine, the node's
own request -> swap time, frames sent / answered / lost before, during and after the switch, stale
drops, and whether any answer after the first new one came from the old engine.

``--faults [SCENARIO ...]``: the node under load and faults, one fresh node per scenario
(slow_subscriber, subscriber_killed, flood at 4x its rate, camera_info_stops, clock_jump in sim
time, invalid_params; see ``mtl_perception.ros.fault_bench``): frames sent / answered, whether the
latest frame was answered, every counter on ~/stats and /diagnostics, RSS, latency p50 / p99.

``--soak SECONDS --rate HZ``: a live soak, one camera open loop through DDS: RSS start / end / peak /
growth and slope (MB per hour), end-to-end p50 / p99 / max, frames sent / answered / lost, the
node's counters at the end.
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

from mtl_perception.atomic_io import atomic_write_json
from mtl_perception.cli import CLIError
from mtl_perception.ros.shutdown import teardown_on_error

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
        type=output_topics,
        default="depth",
        help="what this process subscribes (the node builds only subscribed outputs): 'depth' (+ ~/stats), "
        "'all', or a comma list of node topics, e.g. depth,semantic,semantic/confidence,depth/uncertainty",
    )
    p.add_argument(
        "--input-reliability",
        choices=("best_effort", "reliable"),
        default="reliable",
        help="camera publisher and node subscription reliability",
    )
    p.add_argument("--rss-every", type=float, default=1.0, help="RSS sampling period, s")
    p.add_argument(
        "--cameras",
        type=int,
        default=1,
        help="N > 1: surround benchmark, one node serving N cameras vs N single-camera nodes (same run)",
    )
    p.add_argument("--rate", type=float, default=5.0, help="--cameras: frames/s published per camera")
    p.add_argument("--duration", type=float, default=30.0, help="--cameras: measured seconds per mode")
    p.add_argument("--settle", type=float, default=5.0, help="--cameras: unmeasured seconds before measuring")
    p.add_argument(
        "--switch",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="runtime switch benchmark: set these node parameters after --settle s while frames flow "
        "(repeatable, e.g. --switch decoder=baseline --switch backend=torch)",
    )
    p.add_argument(
        "--faults",
        nargs="*",
        default=None,
        metavar="SCENARIO",
        help="load / fault scenarios, each against a fresh node (none named = all): slow_subscriber, "
        "subscriber_killed, flood, camera_info_stops, clock_jump, invalid_params (mtl_perception.ros.fault_bench); "
        "--log names a directory for the logs",
    )
    p.add_argument("--phase", type=float, default=6.0, help="--faults: seconds per phase of a scenario")
    p.add_argument(
        "--lease-wait",
        type=float,
        default=25.0,
        help="--faults subscriber_killed: stream up to this much longer for the dead reader to leave the graph",
    )
    p.add_argument("--flood-max-rate", type=float, default=400.0, help="--faults flood: cap of the 4x rate, frames/s")
    p.add_argument(
        "--camera-info-timeout",
        type=float,
        default=2.0,
        help="--faults camera_info_stops / --soak: the node's camera_info_timeout, s",
    )
    p.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="SECONDS",
        help="live soak: one camera open loop at --rate Hz for SECONDS after --settle s; RSS growth and slope, "
        "end-to-end latency p50/p99/max, frames lost, the node's counters",
    )
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--json", action="store_true", help="print the JSON report (default: a summary)")
    p.set_defaults(func=run)


def machine_summary() -> dict[str, Any]:
    """The machine every bench-node report states (the load average says whether it was idle)."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def emit_report(args: argparse.Namespace, report: dict[str, Any]) -> bool:
    """``--out``: the report as JSON, written atomically; ``--json``: printed. True when printed (the
    caller prints its human summary otherwise). Every bench-node mode reports through it."""
    if args.out:
        atomic_write_json(args.out, report, indent=2)
    if args.json:
        print(json.dumps(report, indent=2))
    return bool(args.json)


def output_topics(value: str) -> str:
    """--outputs: 'all' or a comma list of the node's output topics (checked here: a typo would measure nothing)."""
    from mtl_perception.ros.harness import OUTPUT_TOPICS

    if value == "all":
        return value
    names = [t.strip().strip("/").removeprefix("~/") for t in value.split(",") if t.strip()]
    unknown = [t for t in names if t not in OUTPUT_TOPICS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown output topic(s) {unknown or value!r}; use 'all' or a comma list of {', '.join(OUTPUT_TOPICS)}"
        )
    return ",".join(names)


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
    p.add_argument(
        "--log",
        default=None,
        help="node log file; with --cameras, --faults or --soak a directory of logs (default: a temp file / folder, "
        "named in the report)",
    )


def checkpoint_path(arg: str | None) -> str:
    from mtl_perception.deploy.artifacts import resolve_checkpoint
    from mtl_perception.deploy.engine import EngineError
    from mtl_perception.model.checkpoint import read_metadata

    try:
        path = resolve_checkpoint(arg)
    except EngineError as exc:
        raise CLIError(str(exc)) from exc
    read_metadata(path)  # a corrupt or foreign file fails here in one line, before a node process starts
    return str(path)


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
    if args.cameras < 1:
        raise CLIError(f"--cameras must be >= 1, got {args.cameras}")
    if args.faults is not None or args.soak is not None:
        from mtl_perception.ros import fault_bench

        if args.cameras > 1 or args.switch:
            raise CLIError("--faults / --soak run one camera; drop --cameras / --switch")
        return fault_bench.run_faults(args) if args.faults is not None else fault_bench.run_soak(args)
    if args.cameras > 1:
        return run_surround(args)
    if args.switch:
        return run_switch(args)

    from mtl_perception.evaluate.replay import percentiles
    from mtl_perception.ros import harness as H

    live, node, _env = start(args, {"input_reliability": args.input_reliability})
    try:
        with teardown_on_error(node):  # kept for exit_process on success
            topics = (
                H.OUTPUT_TOPICS if args.outputs == "all" else tuple(dict.fromkeys([*args.outputs.split(","), "stats"]))
            )
            rec, cam = H.attach(
                node,
                topics,
                args.input_reliability == "reliable",
                required="stats",
                why="~/stats is needed for timings",
            )
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
        "machine": machine_summary(),
        "node_log": str(live.log_path),
    }
    if not emit_report(args, report):
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


# ---------------------------------------------------------------------------------------------- surround
def _surround_mode(args: argparse.Namespace, mode: str, env: dict[str, str], node: Any) -> dict[str, Any]:
    """One mode of the surround benchmark: start the node process(es), stream, measure, stop."""
    import threading

    from mtl_perception.evaluate.replay import percentiles
    from mtl_perception.ros import harness as H

    cams = [f"cam{i}" for i in range(args.cameras)]
    base = {
        "backend": args.backend,
        "precision": args.precision,
        "threads": args.threads,
        "input_reliability": args.input_reliability,  # as the camera publishers (like single-camera mode)
    }
    if args.cache_dir:
        base["engine_cache_dir"] = args.cache_dir
    ckpt = checkpoint_path(args.checkpoint)
    # --log names a directory (as for --faults / --soak): one subfolder per mode, kept for inspection
    logdir = Path(args.log) / mode if args.log else Path(tempfile.mkdtemp(prefix=f"bench_surround_{mode}_"))
    logdir.mkdir(parents=True, exist_ok=True)
    if mode == "one_node":
        cmds = [(H.node_command(ckpt, params={**base, "cameras": "[" + ", ".join(cams) + "]"}), "one")]
        outputs = {c: f"/perception/perception_node/{c}" for c in cams}
    else:
        cmds = [
            (
                H.node_command(
                    ckpt,
                    namespace=f"/{c}_node",
                    image_topic=f"/perception/{c}/image",
                    camera_info_topic=f"/perception/{c}/camera_info",
                    params=base,
                ),
                c,
            )
            for c in cams
        ]
        outputs = {c: f"/{c}_node/perception_node" for c in cams}
    lives = [H.LiveNode(cmd, env, logdir / f"{name}.log", timeout=600) for cmd, name in cmds]
    try:
        for live in lives:
            live.wait_ready()
        reliable = args.input_reliability == "reliable"
        pubs = {c: H.Camera(node, f"/perception/{c}/image", f"/perception/{c}/camera_info", reliable) for c in cams}
        recs = {c: H.Recorder(node, outputs[c], ("depth",), keep=False, depth=5) for c in cams}
        got: dict[str, dict[int, int]] = {c: {} for c in cams}
        for c, rec in recs.items():
            rec.callbacks.append(
                lambda topic, recv_ns, msg, c=c: got[c].__setitem__(H.stamp_ns(msg.header.stamp), recv_ns)
            )
        stop = threading.Event()
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor()
        executor.add_node(node)

        def spin() -> None:
            while not stop.is_set():
                executor.spin_once(0.02)

        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
        try:
            deadline = time.monotonic() + 60
            while not all(r.matched() for r in recs.values()) or any(
                p.image.get_subscription_count() < 1 for p in pubs.values()
            ):
                if time.monotonic() > deadline:
                    raise CLIError(f"{mode}: the node outputs / camera subscriptions never matched")
                time.sleep(0.05)
            time.sleep(0.5)
            rgb = H.pattern_frame(args.height, args.width)
            frames = {c: H.image_message(rgb, "rgb8", pubs[c].header()) for c in cams}
            sent: dict[str, list[int]] = {c: [] for c in cams}
            rss: list[float] = []
            t0 = time.monotonic()
            t_measure, t_end = t0 + args.settle, t0 + args.settle + args.duration
            period, k = 1.0 / args.rate, 0
            while True:
                now = time.monotonic()
                if now >= t_end:
                    break
                ns = time.time_ns()  # one trigger: every camera's frame of this round has the same stamp
                for c in cams:
                    header = pubs[c].header(frame_id=f"{c}_optical_frame", ns=ns)
                    frames[c].header = header
                    pubs[c].info.publish(H.camera_info_message(args.height, args.width, header))
                    pubs[c].image.publish(frames[c])
                    if now >= t_measure:
                        sent[c].append(ns)
                if now >= t_measure and k % max(1, int(args.rate * args.rss_every)) == 0:
                    rss.append(sum(live.rss_mb() for live in lives))
                k += 1
                time.sleep(max(0.0, t0 + k * period - time.monotonic()))
            time.sleep(2.0)  # answers still in flight
        finally:
            stop.set()
            spinner.join(5)
            executor.remove_node(node)
            for rec in recs.values():
                for sub in rec.subs.values():
                    node.destroy_subscription(sub)
            for p in pubs.values():
                node.destroy_publisher(p.image)
                node.destroy_publisher(p.info)
    finally:
        for live in lives:  # Ctrl-C to every node at once, then wait for each (as ros2 launch does)
            live.interrupt()
        codes = [live.stop() for live in lives]
    per_cam = {}
    all_lat = []
    for c in cams:
        lat = [(got[c][s] - s) / 1e6 for s in sent[c] if s in got[c]]
        all_lat += lat
        per_cam[c] = {
            "sent": len(sent[c]),
            "answered": len(lat),
            "fps": len(lat) / args.duration,
            "end_to_end_ms": percentiles(lat),
        }
    answered = sum(v["answered"] for v in per_cam.values())
    return {
        "mode": mode,
        "node_processes": len(lives),
        "frames_per_s_total": answered / args.duration,
        "frames_sent": sum(v["sent"] for v in per_cam.values()),
        "frames_answered": answered,
        "frames_lost": sum(v["sent"] - v["answered"] for v in per_cam.values()),
        "end_to_end_ms_all_cameras": percentiles(all_lat),
        "end_to_end_ms_p50_per_camera": {c: v["end_to_end_ms"].get("p50") for c, v in per_cam.items()},
        "end_to_end_ms_p99_per_camera": {c: v["end_to_end_ms"].get("p99") for c, v in per_cam.items()},
        "per_camera": per_cam,
        "rss_mb_total": {"mean": float(sum(rss) / len(rss)) if rss else None, "peak": max(rss) if rss else None},
        "node_exit_codes": codes,
        "logs": str(logdir),
    }


def run_surround(args: argparse.Namespace) -> int:
    import rclpy

    from mtl_perception.ros import harness as H

    if args.rate <= 0 or args.duration <= 0:
        raise CLIError("--rate and --duration must be > 0")
    env = H.transport_env(args.transport, args.domain_id or random.randint(1, 100))
    os.environ.update(env)
    if args.transport == "default":
        os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    rclpy.init()
    node = rclpy.create_node("bench_surround_driver")
    with teardown_on_error(node):
        modes = {}
        for mode in ("one_node", "separate_nodes"):
            print(f"bench-node: {mode} with {args.cameras} cameras ...", file=sys.stderr, flush=True)
            modes[mode] = _surround_mode(args, mode, env, node)
    one, sep = modes["one_node"], modes["separate_nodes"]
    report = {
        "command": "bench-node --cameras",
        "cameras": args.cameras,
        "rate_per_camera_hz": args.rate,
        "offered_frames_per_s": args.rate * args.cameras,
        "duration_s": args.duration,
        "size": [args.height, args.width],
        "backend": args.backend,
        "precision": args.precision,
        "threads": args.threads,
        "transport": args.transport,
        "checkpoint": checkpoint_path(args.checkpoint),
        "throughput_ratio_one_node_vs_separate": (
            one["frames_per_s_total"] / sep["frames_per_s_total"] if sep["frames_per_s_total"] else None
        ),
        "rss_ratio_one_node_vs_separate": (
            one["rss_mb_total"]["mean"] / sep["rss_mb_total"]["mean"] if sep["rss_mb_total"]["mean"] else None
        ),
        "modes": modes,
        "machine": machine_summary(),
    }
    if not emit_report(args, report):
        for m in (one, sep):
            lat = m["end_to_end_ms_all_cameras"]
            print(
                f"{m['mode']:15s} {m['node_processes']} process(es): {m['frames_per_s_total']:.2f} frames/s "
                f"({m['frames_answered']}/{m['frames_sent']} answered), "
                f"end-to-end p50 {lat.get('p50', float('nan')):.0f} p99 {lat.get('p99', float('nan')):.0f} ms, "
                f"RSS {m['rss_mb_total']['mean'] or float('nan'):.0f} MB"
            )
        print(f"throughput one node / separate nodes: {report['throughput_ratio_one_node_vs_separate']}")
    return 0 if one["frames_answered"] and sep["frames_answered"] else 1


# ---------------------------------------------------------------------------------------------- runtime switch
def _parse_switch(items: list[str]) -> dict[str, Any]:
    import yaml

    from mtl_perception.ros import params as P

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in P.ENGINE_PARAMS:
            raise CLIError(f"--switch {item!r}: expected NAME=VALUE with NAME one of {', '.join(P.ENGINE_PARAMS)}")
        v = yaml.safe_load(value) if name == "threads" else value
        reason = P.validate(name, v)
        if reason:
            raise CLIError(f"--switch {item!r}: {reason}")
        out[name] = v
    return out


SWITCH_WAIT_S = 60.0  # --switch: how long past --duration to wait for the new engine's first answer
AFTER_SWITCH_S = 2.0  # ... and how long to keep streaming after it


def run_switch(args: argparse.Namespace) -> int:
    import re
    import threading

    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    from mtl_perception.evaluate.replay import percentiles
    from mtl_perception.ros import harness as H

    changes = _parse_switch(args.switch)
    live, node, _env = start(args, {"input_reliability": args.input_reliability})
    fqn = "/perception/perception_node"
    try:
        with teardown_on_error(node):  # kept for exit_process on success
            rec, cam = H.attach(
                node,
                ("result", "stats"),
                args.input_reliability == "reliable",
                required="result",
                why="~/result is needed",
            )
            answers: dict[int, tuple[int, str]] = {}  # stamp -> (receipt ns, engine identity)
            last_stats: list[Any] = []

            def on_msg(topic: str, recv_ns: int, msg: Any) -> None:
                if topic == "result":
                    ident = f"{msg.decoder} {msg.backend}/{msg.precision} {msg.model_hash[:12]}"
                    answers[H.stamp_ns(msg.header.stamp)] = (recv_ns, ident)
                else:
                    last_stats[:] = [msg]

            rec.callbacks.append(on_msg)
            from rclpy.executors import SingleThreadedExecutor

            executor = SingleThreadedExecutor()
            executor.add_node(node)
            stop = threading.Event()

            def spin() -> None:
                while not stop.is_set():
                    executor.spin_once(0.02)

            spinner = threading.Thread(target=spin, daemon=True)
            spinner.start()
            client = AsyncParameterClient(node, fqn)
            if not client.wait_for_services(timeout_sec=30):
                raise CLIError(f"{fqn} parameter services not available")
            rgb = H.pattern_frame(args.height, args.width)
            frame = H.image_message(rgb, "rgb8", cam.header())
            sent: list[int] = []
            t0 = time.monotonic()
            t_set_ns = None
            period, k = 1.0 / args.rate, 0
            future = None
            new_since: list[float] = []  # monotonic time the first answer from another engine arrived

            def streaming() -> bool:
                """--settle + --duration, and past it (up to SWITCH_WAIT_S) until the new engine has answered
                for AFTER_SWITCH_S: a slow build (an ONNX export on a loaded machine) still gets measured."""
                now = time.monotonic()
                if not new_since and answers:
                    idents = [ident for _r, ident in list(answers.values())]
                    if any(i != idents[0] for i in idents):
                        new_since.append(now)
                if now < t0 + args.settle + args.duration:
                    return True
                if new_since:
                    return now < new_since[0] + AFTER_SWITCH_S
                return now < t0 + args.settle + args.duration + SWITCH_WAIT_S

            try:
                while streaming():
                    if t_set_ns is None and time.monotonic() >= t0 + args.settle:
                        t_set_ns = time.time_ns()
                        future = client.set_parameters([Parameter(n, value=v) for n, v in changes.items()])
                    header = cam.header()
                    frame.header = header
                    cam.info.publish(H.camera_info_message(args.height, args.width, header))
                    cam.image.publish(frame)
                    sent.append(H.stamp_ns(header.stamp))
                    k += 1
                    time.sleep(max(0.0, t0 + k * period - time.monotonic()))
                time.sleep(2.0)
            finally:
                stop.set()
                spinner.join(5)
            accepted = future is not None and future.done() and all(r.successful for r in future.result().results)
    finally:
        rc = live.stop()
    log = live.log()
    old_ident = answers[min(answers)][1] if answers else None
    new = sorted((recv, ident) for _s, (recv, ident) in answers.items() if ident != old_ident)
    first_new_recv = new[0][0] if new else None
    first_new_stamp = min((s for s, (_r, ident) in answers.items() if ident != old_ident), default=None)
    old_after_new = (
        sum(1 for s, (_r, ident) in answers.items() if ident == old_ident and s > first_new_stamp)
        if first_new_stamp
        else None
    )

    def window(lo: int, hi: int) -> dict[str, Any]:
        stamps = [s for s in sent if lo <= s < hi]
        got = [s for s in stamps if s in answers]
        return {"sent": len(stamps), "answered": len(got), "lost": len(stamps) - len(got)}

    end = max(sent) + 1 if sent else 0
    swap = re.search(r"engine switched (.*?) in ([0-9.]+) s; the old engine served (\d+) frames", log)
    built = re.search(r"new engine ready after ([0-9.]+) s", log)
    st = last_stats[0] if last_stats else None
    report = {
        "command": "bench-node --switch",
        "switch": changes,
        "accepted": accepted,
        "rate_hz": args.rate,
        "size": [args.height, args.width],
        "backend": args.backend,
        "precision": args.precision,
        "checkpoint": checkpoint_path(args.checkpoint),
        "engine_before": old_ident,
        "engine_after": new[0][1] if new else None,
        "request_to_first_new_answer_s": (first_new_recv - t_set_ns) / 1e9 if first_new_recv and t_set_ns else None,
        "node_build_s": float(built.group(1)) if built else None,
        "node_request_to_swap_s": float(swap.group(2)) if swap else None,
        "frames_served_by_old_engine_while_building": int(swap.group(3)) if swap else None,
        "answers_from_old_engine_after_first_new": old_after_new,
        "frames_before_switch": window(0, t_set_ns or end),
        "frames_during_switch": window(t_set_ns or end, first_new_stamp or end),
        "frames_after_switch": window(first_new_stamp or end, end),
        "end_to_end_ms": percentiles([(r - s) / 1e6 for s, (r, _i) in answers.items()]),
        "node_stats": (
            {
                k: int(getattr(st, k))
                for k in (
                    "frames_received",
                    "frames_processed",
                    "frames_dropped_stale",
                    "frames_failed",
                    "engine_switches",
                    "engine_switch_failures",
                )
            }
            if st
            else None
        ),
        "node_exit_code": rc,
        "machine": machine_summary(),
        "node_log": str(live.log_path),
    }
    if not emit_report(args, report):
        d = report["frames_during_switch"]
        print(
            f"switch {changes}: {old_ident} -> {report['engine_after']}; first new answer after "
            f"{report['request_to_first_new_answer_s']} s (node: built {report['node_build_s']} s, swapped "
            f"{report['node_request_to_swap_s']} s); during the switch {d['answered']}/{d['sent']} frames answered; "
            f"old-engine answers after the first new one: {old_after_new}"
        )
    return 0 if accepted and new and rc == 0 else 1
