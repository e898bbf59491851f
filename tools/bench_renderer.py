"""Benchmark the synthetic street renderer: frames/s on ONE core at 256x512.

Run it pinned to one core so the figure is comparable across machines::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python tools/bench_renderer.py

Thread counts are also forced to 1 below (before numpy is imported), so even without
``taskset`` the render loop itself is single threaded. Prints one JSON object.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

cv2.setNumThreads(1)

from mtl_perception.data.synthetic import render_sequence  # noqa: E402


def bench(seeds: list[int], frames: int, height: int, width: int, randomization: str = "full") -> dict:
    """Median per-frame time over ``frames`` frames of each seed's sequence (first frame = warm-up).

    Wall time and this process's CPU time are both reported: on a shared machine (a training run
    on the same cores) only the CPU figures are comparable between runs.
    """
    per_frame: list[float] = []
    per_frame_cpu: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for seed in seeds:
        it = render_sequence(seed, frames + 1, height, width, randomization=randomization)
        next(it)  # world generation + buffers, not part of the steady-state frame time
        t, c = time.perf_counter(), time.process_time()
        for _ in it:
            now, cnow = time.perf_counter(), time.process_time()
            per_frame.append(now - t)
            per_frame_cpu.append(cnow - c)
            t, c = now, cnow
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    med = statistics.median(per_frame)
    med_cpu = statistics.median(per_frame_cpu)
    return {
        "height": height,
        "width": width,
        "seeds": seeds,
        "randomization": randomization,
        "frames_timed": len(per_frame),
        "median_ms": round(med * 1e3, 2),
        "mean_ms": round(statistics.fmean(per_frame) * 1e3, 2),
        "p90_ms": round(sorted(per_frame)[int(0.9 * (len(per_frame) - 1))] * 1e3, 2),
        "fps_median": round(1.0 / med, 1),
        "fps_mean": round(len(per_frame) / sum(per_frame), 1),
        "cpu_median_ms": round(med_cpu * 1e3, 2),
        "fps_cpu_median": round(1.0 / med_cpu, 1),
        "cpu_over_wall": round(cpu / wall, 2),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="timed frames per seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--randomization", choices=("full", "basic"), default="full")
    a = ap.parse_args()
    print(json.dumps(bench(a.seeds, a.frames, a.height, a.width, a.randomization)))


if __name__ == "__main__":
    main()
