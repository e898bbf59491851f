"""``mtl-perception bench``: latency / throughput / memory of every backend x precision, in one run.

Each combination runs the node's pipeline (preprocess, engine, postprocess to the frame's
resolution) on synthetic frames; accuracy deltas vs the torch fp32 reference are measured on
a small held-out synthetic set in the same run.

``--batch 1 6`` also times the multi-camera path: N different frames (N "cameras", each with
its own K) through ``FramePipeline.process_batch``, one inference call per N frames, on an
engine built with ``max_batch=N`` (dynamic-batch artifact). ``latency_ms`` is then per call and
``fps`` frames per second (N per call).

``--rounds R`` (R > 1) builds every engine first and then times them in R rounds, each round
``--iters`` frames of every engine in turn (the order rotated from round to round), so a host whose
speed drifts during the run (a shared VM) slows every model alike: the ratios between models, which
a single sequential pass can move by 20 % on such a host, are then taken from the pooled frames,
and ``ratios_per_round`` shows their spread. It holds every engine in memory at once.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl_perception.atomic_io import atomic_write_text
from mtl_perception.cli import CLIError
from mtl_perception.cli.pipeline_args import add_pipeline_arguments, pipeline_options

COMBOS = [
    ("torch", "fp32"),
    ("torch", "fp16"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "fp16"),
    ("onnxruntime", "int8"),
    ("tensorrt", "fp32"),
    ("tensorrt", "fp16"),
    ("tensorrt", "int8"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency, frames/s, memory and accuracy deltas per backend and precision (JSON)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        help="model .safetensors (default: the shipped model); repeat it to compare models in one run "
        "(each at its own input size; fps ratios against the first)",
    )
    p.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "int8"))
    p.add_argument("--all", action="store_true", help="every backend x precision available on this machine")
    p.add_argument("--train-form", action="store_true", help="also time the torch training form (deploy speed-up)")
    p.add_argument("--height", type=int, default=None, help="frame height (default: the model's input)")
    p.add_argument("--width", type=int, default=None, help="frame width (default: the model's input)")
    p.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[1],
        metavar="N",
        help="frames per inference call, from N different cameras (default 1); several values: one row each",
    )
    p.add_argument("--iters", type=int, default=30, help="timed frames per engine (per round with --rounds)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time every engine in R interleaved rounds of --iters frames, all engines built first, the order "
        "rotated each round (robust ratios on a host whose speed drifts; default 1: one engine after another)",
    )
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch / ONNX Runtime")
    p.add_argument(
        "--eval-frames", type=int, default=20, help="held-out synthetic frames for accuracy deltas (0: skip)"
    )
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="also write the JSON here")
    add_pipeline_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON (default: a table and the JSON path)")
    p.set_defaults(func=run)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _accuracy(engine, frames, options=None) -> dict[str, float]:
    from mtl_perception.evaluate.runner import evaluate_engine

    res, _ = evaluate_engine(engine, frames, num_classes=len(engine.info.classes), keep_samples=0, options=options)
    return {
        "miou_present": 100 * res["semseg"]["miou_present"],
        "abs_rel": res["depth"]["abs_rel"],
        "rmse": res["depth"]["rmse"],
    }


def run(args: argparse.Namespace) -> int:
    import torch

    from mtl_perception.deploy.engine import cuda_available

    if any(n < 1 for n in args.batch):
        raise CLIError(f"--batch values must be >= 1, got {args.batch}")
    if args.rounds < 1:
        raise CLIError(f"--rounds must be >= 1, got {args.rounds}")
    if args.iters < 1:
        raise CLIError(f"--iters must be >= 1 (timed frames per engine), got {args.iters}")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if cuda_available() else "cpu"
    checkpoints = args.checkpoint or [None]
    setups = [_setup(args, ckpt, device) for ckpt in checkpoints]
    if args.rounds == 1:
        per_ckpt = [_bench_sequential(args, setup, device) for setup in setups]
    else:
        per_ckpt = _bench_interleaved(args, setups, device)
    rows: list[dict] = []
    for ckpt, ckpt_rows in zip(checkpoints, per_ckpt):
        label = "shipped" if ckpt is None else Path(ckpt).stem
        for r in ckpt_rows:
            r["checkpoint"] = ckpt or "shipped"
            if len(checkpoints) > 1:
                r["name"] = f"{label}: {r['name']}"
        rows += ckpt_rows
    ratios = _ratios(rows, checkpoints)
    per_round = _ratios_per_round(rows, checkpoints) if args.rounds > 1 else None
    return _report(args, rows, ratios, device, setups[0].size, torch, per_round)


@dataclass
class _Setup:
    """One checkpoint's frames and plan: what every engine of it is timed and scored on."""

    checkpoint: str | None
    size: tuple[int, int]
    frames: list  # one frame per "camera" (--batch N uses the first N)
    Ks: list
    eval_frames: list
    plan: list  # (backend, precision, train_form, batch)
    skipped: list  # rows of combinations this machine cannot run, with the reason


def _setup(args: argparse.Namespace, checkpoint: str | None, device: str) -> _Setup:
    from mtl_perception.data.synthetic import render_sequence
    from mtl_perception.deploy.engine import EngineError, InferenceEngine, backend_supports

    skipped: list[dict] = []
    if args.all:  # what cannot run here is listed with the reason, not silently left out
        combos = []
        for b, p in COMBOS:
            ok, why = backend_supports(b, p, device)
            if ok:
                combos.append((b, p))
            else:
                skipped.append({"name": f"{b}/{p}", "backend": b, "precision": p, "skipped": why})
    else:
        combos = [(args.backend, args.precision)]
    if args.train_form and ("torch", "fp32") not in combos:
        combos.insert(0, ("torch", "fp32"))
    try:
        probe = InferenceEngine.create(checkpoint, backend="torch", precision="fp32", device="cpu")
    except EngineError as exc:
        raise CLIError(str(exc)) from exc
    h = args.height or probe.input_size[0]
    w = args.width or probe.input_size[1]
    del probe
    # N "cameras": the first frame of N different streets, each with its K; camera 0 is the
    # single-frame bench's frame, so batch 1 times what it always timed
    cams = [next(iter(render_sequence(4242 + i, 1, h, w))) for i in range(max(args.batch))]
    eval_frames = []
    if args.eval_frames:
        eval_frames = [
            {"image": f.image, "semseg": f.semantic, "depth": f.depth, "K": f.K}
            for f in render_sequence(777, args.eval_frames, h, w, fps=1.0)
        ]
    plan = [(b, p, False, n) for b, p in combos for n in args.batch]
    if args.train_form:
        plan.insert(1, ("torch", "fp32", True, 1))
    return _Setup(checkpoint, (h, w), [c.image for c in cams], [c.K for c in cams], eval_frames, plan, skipped)


def _step_name(step: tuple) -> str:
    """A plan step's row name: ``backend/precision[/train-form][/batchN]``."""
    backend, precision, train_form, n = step
    return f"{backend}/{precision}" + ("/train-form" if train_form else "") + (f"/batch{n}" if n > 1 else "")


class _Case:
    """One engine of the plan, built, warmed up and ready to time through the node's pipeline."""

    def __init__(self, args: argparse.Namespace, setup: _Setup, step: tuple, device: str) -> None:
        import torch

        from mtl_perception.deploy.engine import InferenceEngine
        from mtl_perception.pipeline import FramePipeline

        backend, precision, train_form, n = step
        self.checkpoint = setup.checkpoint
        self.backend, self.precision, self.train_form, self.n = backend, precision, train_form, n
        self.name = _step_name(step)
        self.device = device
        gc.collect()
        self.rss0 = _rss_mb()
        opts = {"train_form": True} if train_form else {}
        self.engine = InferenceEngine.create(
            setup.checkpoint,
            backend=backend,
            precision=precision,
            device=device,
            cache_dir=args.cache_dir,
            threads=args.threads,
            max_batch=n,
            **opts,
        )
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.engine.warmup(args.warmup)
        self.options = pipeline_options(args)
        # the node's path: letterbox, engine, products in metres, with the node's depth options
        self.pipeline = FramePipeline.from_options(self.engine, self.options)
        self.frames, self.Ks = setup.frames[:n], setup.Ks[:n]
        self.pipeline.process_batch(self.frames, self.Ks)  # first call at this batch shape outside the timing
        self.latencies: list[float] = []
        self.fps_per_round: list[float] = []
        self.peak = _rss_mb()

    def time(self, iters: int) -> None:
        """``iters`` calls, their latencies (ms) added to this case's and this round's frames/s noted."""
        lat = []
        for _ in range(iters):
            t0 = time.perf_counter()
            if self.n == 1:
                self.pipeline.process(self.frames[0], K=self.Ks[0])
            else:
                self.pipeline.process_batch(self.frames, self.Ks)
            lat.append((time.perf_counter() - t0) * 1000)
            self.peak = max(self.peak, _rss_mb())
        self.latencies += lat
        if lat:
            self.fps_per_round.append(float(1000.0 * self.n / np.median(lat)))

    def row(self, setup: _Setup, rounds: int) -> dict:
        import torch

        lat_a = np.asarray(self.latencies)
        n = self.n
        row = {
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "form": "train" if self.train_form else "deploy",
            "batch": n,
            # per call (n frames); fps counts frames
            "latency_ms": {q: float(np.percentile(lat_a, int(q[1:]))) for q in ("p50", "p90", "p99")},
            "latency_per_frame_ms": float(np.median(lat_a) / n),
            "fps": float(1000.0 * n / np.median(lat_a)),
            # interleaved: the process held every engine, so "peak" is the whole run's
            "rss_mb": {"before": self.rss0, "peak": self.peak},
            "engine": self.engine.describe(),
        }
        if rounds > 1:
            row["fps_per_round"] = self.fps_per_round
        if self.device == "cuda":
            row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        if setup.eval_frames:
            row["accuracy"] = _accuracy(self.engine, setup.eval_frames, self.options)
        return row


def _build(args: argparse.Namespace, setup: _Setup, step: tuple, device: str) -> _Case | dict:
    """The case, or a skipped row naming why this engine could not be built here."""
    from mtl_perception.deploy.engine import EngineError

    try:
        return _Case(args, setup, step, device)
    except (EngineError, RuntimeError, ImportError) as exc:
        return {"name": _step_name(step), "backend": step[0], "precision": step[1], "skipped": str(exc)}


def _with_accuracy_deltas(rows: list[dict]) -> list[dict]:
    # the first torch fp32 row (the deploy form: the train form is planned after it)
    reference = next(
        (r["accuracy"] for r in rows if "accuracy" in r and (r["backend"], r["precision"]) == ("torch", "fp32")),
        None,
    )
    if reference:
        for row in rows:
            if "accuracy" in row:
                row["accuracy_delta_vs_torch_fp32"] = {k: row["accuracy"][k] - reference[k] for k in reference}
    return rows


def _bench_sequential(args: argparse.Namespace, setup: _Setup, device: str) -> list[dict]:
    """One engine after another, each freed before the next is built (the least memory)."""
    rows = list(setup.skipped)
    for step in setup.plan:
        case = _build(args, setup, step, device)
        if isinstance(case, dict):
            rows.append(case)
            continue
        case.time(args.iters)
        rows.append(case.row(setup, 1))
        del case
    return _with_accuracy_deltas(rows)


def _bench_interleaved(args: argparse.Namespace, setups: list[_Setup], device: str) -> list[list[dict]]:
    """Every engine of every checkpoint built first, then ``args.rounds`` rounds of ``args.iters`` frames each,
    the order rotated by one each round; accuracy after all timing."""
    built: list[list[_Case | dict]] = [[_build(args, s, step, device) for step in s.plan] for s in setups]
    cases = [c for per in built for c in per if isinstance(c, _Case)]
    for r in range(args.rounds):
        k = r % len(cases) if cases else 0
        for case in cases[k:] + cases[:k]:
            case.time(args.iters)
    out = []
    for setup, per in zip(setups, built):
        rows = list(setup.skipped) + [c if isinstance(c, dict) else c.row(setup, args.rounds) for c in per]
        out.append(_with_accuracy_deltas(rows))
    return out


def _ratios(rows: list[dict], checkpoints: list) -> dict[str, float]:
    ratios: dict[str, float] = {}
    # multi-camera: frames/s of each batch against batch 1 of the same model x backend x precision
    single = {(r["checkpoint"], r["name"]): r for r in rows if r.get("batch") == 1}
    for r in rows:
        if r.get("batch", 1) > 1:
            base = single.get((r["checkpoint"], r["name"].rsplit("/batch", 1)[0]))
            if base:
                ratios[f"{r['name']} vs batch 1 fps"] = r["fps"] / base["fps"]
    if len(checkpoints) > 1:  # every later model against the first, per backend x precision
        for key, r, base in _against_first(rows, checkpoints, "fps"):
            ratios[key] = r["fps"] / base["fps"]
        return ratios
    by = {r["name"]: r for r in rows if "fps" in r}
    if "onnxruntime/int8" in by and "onnxruntime/fp32" in by:
        ratios["ort_int8_vs_ort_fp32_fps"] = by["onnxruntime/int8"]["fps"] / by["onnxruntime/fp32"]["fps"]
        if "accuracy" in by["onnxruntime/int8"] and "accuracy" in by["onnxruntime/fp32"]:
            ratios["ort_int8_miou_points_vs_ort_fp32"] = (
                by["onnxruntime/int8"]["accuracy"]["miou_present"] - by["onnxruntime/fp32"]["accuracy"]["miou_present"]
            )
    if "torch/fp32/train-form" in by and "torch/fp32" in by:
        ratios["deploy_vs_train_form_fps"] = by["torch/fp32"]["fps"] / by["torch/fp32/train-form"]["fps"]
    return ratios


def _against_first(rows: list[dict], checkpoints: list, field: str):
    """(ratio key, row, the first checkpoint's row of the same backend x precision) for every later model's
    row that has ``field``; the key names both models and the combination."""
    first_ckpt = checkpoints[0] or "shipped"
    first = {r["name"].split(": ", 1)[1]: r for r in rows if field in r and r["checkpoint"] == first_ckpt}
    for r in rows:
        if field not in r or r["checkpoint"] == first_ckpt:
            continue
        label, combo = r["name"].split(": ", 1)
        if combo in first:
            base = first[combo]
            yield f"{label} vs {base['name'].split(': ', 1)[0]} fps ({combo})", r, base


def _ratios_per_round(rows: list[dict], checkpoints: list) -> dict[str, list[float]]:
    """With several checkpoints and --rounds: each later model's frames/s over the first's, round by round."""
    if len(checkpoints) < 2:
        return {}
    return {
        key: [a / b for a, b in zip(r["fps_per_round"], base["fps_per_round"])]
        for key, r, base in _against_first(rows, checkpoints, "fps_per_round")
    }


def _report(
    args: argparse.Namespace,
    rows: list[dict],
    ratios: dict,
    device: str,
    frame: tuple,
    torch,
    ratios_per_round: dict | None = None,
) -> int:
    h, w = frame
    report = {
        "benchmark": "bench",
        "frame": [h, w],
        "iters": args.iters,
        "rounds": args.rounds,
        "batch": args.batch,
        "device": device,
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu": _cpu_model(),
            "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        },
        "threads": args.threads or torch.get_num_threads(),
        "depth_options": pipeline_options(args).as_dict(),
        "eval_frames": args.eval_frames,
        "checkpoints": [c or "shipped" for c in (args.checkpoint or [None])],
        "results": rows,
        "ratios": ratios,
    }
    if ratios_per_round is not None:
        report["ratios_per_round"] = ratios_per_round
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text + "\n")
    if args.json:
        print(text)
    else:
        print(
            f"{'combination':28} {'p50 ms':>8} {'p99 ms':>8} {'fps':>7} {'peak RSS MB':>12} {'mIoU':>7} {'AbsRel':>7}"
        )
        for r in rows:
            if "skipped" in r:
                print(f"{r['name']:28} skipped: {r['skipped']}")
                continue
            acc = r.get("accuracy", {})
            miou, absrel = acc.get("miou_present", float("nan")), acc.get("abs_rel", float("nan"))
            print(
                f"{r['name']:28} {r['latency_ms']['p50']:8.1f} {r['latency_ms']['p99']:8.1f} {r['fps']:7.2f} "
                f"{r['rss_mb']['peak']:12.0f} {miou:7.2f} {absrel:7.4f}"
            )
        for k, v in ratios.items():
            spread = (ratios_per_round or {}).get(k)
            extra = f" (rounds: {min(spread):.2f}-{max(spread):.2f}x)" if spread else ""
            print(f"{k}: {v:.2f}x{extra}")
    return 0
