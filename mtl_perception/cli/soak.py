"""``mtl-perception soak``: N frames through the node's pipeline as fast as possible; RSS and latency.

Each frame is an rgb8 ``sensor_msgs/Image``-shaped message (fields only, ``bytes`` data) decoded
with ``imaging.image_msg_to_rgb`` and run through ``FramePipeline.process`` with the frame's
camera matrix (as the node passes its camera_info's K): the node's per-frame work without DDS.
A few synthetic street frames are rendered once and cycled, so rendering is not measured. RSS is
sampled every ``--sample-every`` frames; growth is reported from the first sample after warm-up to
the end, plus the least-squares slope (MB per 1000 frames) so a steady leak is told apart from
one-off allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from mtl_perception.atomic_io import atomic_write_json
from mtl_perception.cli import CLIError
from mtl_perception.cli.pipeline_args import add_pipeline_arguments, pipeline_options
from mtl_perception.cli.replay_eval import add_model_args, build_engine


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; else peak RSS from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soak",
        help="N frames through the node's pipeline at the fastest rate: RSS growth and latency",
        description="Soak test: decode + preprocess + inference + postprocess on N frames back to back, RSS "
        "sampled every K frames. Reports RSS start/end/peak/growth %% and the latency percentiles.",
    )
    p.add_argument("--frames", type=int, required=True, help="number of frames (e.g. 10000)")
    add_model_args(p)
    p.add_argument("--height", type=int, default=None, help="frame height (default: the network's input height)")
    p.add_argument("--width", type=int, default=None, help="frame width (default: the network's input width)")
    p.add_argument("--sample-every", type=int, default=100, help="sample RSS every K frames (default 100)")
    p.add_argument("--warmup", type=int, default=20, help="frames before the RSS baseline (default 20)")
    p.add_argument("--distinct", type=int, default=8, help="distinct synthetic frames to cycle (default 8)")
    p.add_argument("--out", default=None, help="also write the JSON (with the RSS series) to this file")
    p.add_argument("--no-progress", action="store_true")
    add_pipeline_arguments(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.set_defaults(func=run)


def _messages(n: int, height: int, width: int) -> list[Any]:
    """Image-shaped messages; each also carries its frame's 3x3 ``K`` (what the node gets from camera_info)."""
    from mtl_perception.data.synthetic import render_sequence

    msgs = []
    for fr in render_sequence(1234, n, height, width, fps=10.0):
        img = np.ascontiguousarray(fr.image, np.uint8)
        msgs.append(
            SimpleNamespace(
                height=height,
                width=width,
                encoding="rgb8",
                step=width * 3,
                is_bigendian=0,
                data=img.tobytes(),
                K=np.asarray(fr.K, np.float64),
            )
        )
    return msgs


def soak(pipeline: Any, msgs: list[Any], frames: int, sample_every: int, warmup: int, progress: Any = None) -> dict:
    from mtl_perception.imaging import image_msg_to_rgb

    lat: dict[str, list[float]] = {k: [] for k in ("decode", "preprocess", "inference", "postprocess", "total")}
    series: list[tuple[int, float]] = []
    baseline = None
    t_start = time.perf_counter()
    for i in range(frames):
        t0 = time.perf_counter()
        msg = msgs[i % len(msgs)]
        rgb = image_msg_to_rgb(msg)
        dec = 1e3 * (time.perf_counter() - t0)
        res = pipeline.process(rgb, K=getattr(msg, "K", None))
        lat["decode"].append(dec)
        for k, v in res.timings_ms.items():
            lat.setdefault(k, []).append(v)
        lat["total"].append(1e3 * (time.perf_counter() - t0))
        done = i + 1
        if done == min(warmup, frames):
            baseline = (done, rss_mb())
            series.append(baseline)
        elif done % sample_every == 0 or done == frames:
            series.append((done, rss_mb()))
        if progress is not None:
            progress(1)
    wall = time.perf_counter() - t_start
    from mtl_perception.evaluate.replay import percentiles

    start = baseline[1] if baseline else series[0][1]
    end = series[-1][1]
    xs = np.array([s[0] for s in series], np.float64)
    ys = np.array([s[1] for s in series], np.float64)
    slope = float(np.polyfit(xs, ys, 1)[0] * 1000) if len(series) >= 3 else 0.0
    steady = {k: v[warmup:] or v for k, v in lat.items()}
    return {
        "frames": frames,
        "wall_s": round(wall, 3),
        "fps": round(frames / wall, 3) if wall > 0 else None,
        "rss_mb": {
            "start_after_warmup": round(start, 2),
            "end": round(end, 2),
            "peak_sampled": round(float(ys.max()), 2),
            "growth_pct": round(100 * (end - start) / start, 3) if start else None,
            "slope_mb_per_1000_frames": round(slope, 4),
            "warmup_frames": warmup,
            "samples": len(series),
        },
        "latency_ms": {k: percentiles(v) for k, v in steady.items() if v},
        "rss_series": [[int(a), round(b, 2)] for a, b in series],
    }


def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise CLIError("--frames must be >= 1")
    if args.sample_every < 1 or args.warmup < 0 or args.distinct < 1:
        raise CLIError("--sample-every and --distinct must be >= 1, --warmup >= 0")
    engine = build_engine(args)
    from mtl_perception.pipeline import FramePipeline

    h, w = engine.input_size
    height, width = args.height or h, args.width or w
    if height < 8 or width < 8:
        raise CLIError("--height and --width must be >= 8")
    options = pipeline_options(args)
    pipeline = FramePipeline.from_options(engine, options, output_resolution="input")
    msgs = _messages(min(args.distinct, args.frames), height, width)
    from tqdm import tqdm

    bar = tqdm(total=args.frames, desc="soak", unit="frame", file=sys.stderr, disable=args.no_progress or None)
    try:
        res = soak(pipeline, msgs, args.frames, args.sample_every, min(args.warmup, args.frames), bar.update)
    finally:
        bar.close()
    desc = engine.describe()
    res["meta"] = {
        "checkpoint": str(engine.info.extra.get("checkpoint")),
        "decoder": engine.info.decoder,
        **{k: desc[k] for k in ("backend", "precision", "device") if k in desc},
        "frame": f"{width}x{height}",
        "network_input": "x".join(map(str, engine.input_size)),
        **options.as_dict(),
        "pid": os.getpid(),
    }
    if args.out:
        atomic_write_json(args.out, res, newline=False, indent=2)
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "rss_series"}, indent=2))
    else:
        r, t = res["rss_mb"], res["latency_ms"]["total"]
        print(
            f"{res['frames']} frames in {res['wall_s']:.1f} s ({res['fps']:.1f} fps); "
            f"RSS {r['start_after_warmup']:.1f} -> "
            f"{r['end']:.1f} MiB ({r['growth_pct']:+.2f} %, {r['slope_mb_per_1000_frames']:+.3f} MiB/1000 frames); "
            f"latency p50 {t['p50']:.2f} ms p99 {t['p99']:.2f} ms"
        )
    return 0
