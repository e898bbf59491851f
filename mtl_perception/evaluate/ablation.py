"""Decoder ablation (ROS-free): train every decoder variant and the two single-task references
with one recipe, evaluate them on the same held-out frames, measure params / GFLOPs / latency of
the deploy form, compute Delta_m, and write a markdown table + JSON.

The recipe is ``config/train/ablation.yaml``: a shared train recipe (``train``), a model
override merged over every variant's config (``model``), the variants, the single-task switch,
the held-out set and the latency settings. Runs go to ``<out>/<run name>/`` and are skipped
when their final checkpoint exists with the same recipe fingerprint.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtl_perception.atomic_io import atomic_savefig, atomic_write_json, atomic_write_text
from mtl_perception.model.config import merge_config
from mtl_perception.model.errors import ConfigError

SECTIONS = ("train", "model", "variants", "single_task", "eval", "latency")
# Delta_m metrics, as in `mtl-perception eval --single-task` (MLoRE's NYUD convention: one
# headline metric per task); the 3-metric form adds AbsRel. name -> lower is better.
DELTA_METRICS: dict[str, bool] = {"miou": False, "rmse": True}
DELTA_METRICS_ABSREL: dict[str, bool] = {"miou": False, "rmse": True, "abs_rel": True}
STL_TASK_OF_METRIC = {"miou": "semseg", "rmse": "depth", "abs_rel": "depth"}
RUN_MARKER = "ablation_run.json"


@dataclass
class RunSpec:
    name: str
    kind: str  # "multi" | "single"
    decoder: str
    tasks: list[str]
    train_cfg: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({k: v for k, v in self.train_cfg.items() if k != "_base_dir"}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_ablation_config(
    path: str | Path,
    steps: int | None = None,
    eval_frames: int | None = None,
    variants: list[str] | None = None,
) -> dict[str, Any]:
    """Read and validate the recipe; apply CLI overrides (steps, eval frames, variant subset).

    ``variants`` may name multi-task variants and ``single_<task>``; the single-task runs are
    kept whenever any multi-task run is, since Delta_m needs them.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ablation config {str(p)!r} not found; see config/train/ablation.yaml")
    raw = yaml.safe_load(p.read_text()) or {}
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown ablation config key(s) {sorted(unknown)}; valid: {list(SECTIONS)}")
    for key in ("train", "variants", "eval"):
        if not isinstance(raw.get(key), dict) or not raw[key]:
            raise ConfigError(f"ablation config: {key!r} must be a non-empty mapping")
    if "model" in raw["train"]:
        raise ConfigError("ablation config: train.model is set per variant; put shared model keys under 'model'")
    cfg = copy.deepcopy(raw)
    cfg["_base_dir"] = str(p.resolve().parent)
    cfg["_path"] = str(p)
    cfg.setdefault("model", {})
    cfg.setdefault("single_task", {"base": "baseline", "tasks": ["semseg", "depth"]})
    cfg.setdefault("latency", {})
    if steps is not None:
        if steps <= 0:
            raise ConfigError(f"--steps must be positive, got {steps}")
        cfg["train"]["steps"] = int(steps)
        warm = cfg["train"].get("schedule", {}).get("warmup_steps", 0)
        if warm >= steps:  # keep a decay phase in very short runs (tests, smoke runs)
            cfg["train"].setdefault("schedule", {})["warmup_steps"] = steps // 4
    if eval_frames is not None:
        if eval_frames <= 0:
            raise ConfigError(f"--eval-frames must be positive, got {eval_frames}")
        cfg["eval"]["frames"] = int(eval_frames)
    gen = cfg["train"].get("data", {}).get("train", {}).get("generate") or {}
    if "seed" in gen and int(gen["seed"]) == int(cfg["eval"].get("seed", -1)):
        raise ConfigError("ablation config: eval.seed must differ from the training set's generate.seed")
    st = cfg["single_task"]
    if st.get("base") not in cfg["variants"]:
        raise ConfigError(f"single_task.base {st.get('base')!r} must be one of the variants {list(cfg['variants'])}")
    if variants:
        known = set(cfg["variants"]) | {f"single_{t}" for t in st.get("tasks", [])}
        bad = sorted(set(variants) - known)
        if bad:
            raise ConfigError(f"unknown variant(s) {bad}; known: {sorted(known)}")
        cfg["_selected"] = list(variants)
    return cfg


def _variant_model(cfg: dict[str, Any], variant: str) -> dict[str, Any]:
    entry = cfg["variants"][variant]
    entry = {"config": entry} if isinstance(entry, str) else dict(entry)
    mpath = Path(entry["config"])
    if not mpath.is_absolute():
        mpath = Path(cfg["_base_dir"]) / mpath
    if not mpath.is_file():
        raise ConfigError(f"variants.{variant}: model config {str(mpath)!r} not found")
    model = yaml.safe_load(mpath.read_text())
    model = merge_config(model, cfg.get("model") or {})
    if entry.get("decoder"):
        model["decoder"] = merge_config(model["decoder"], entry["decoder"])
    return model


def plan_runs(cfg: dict[str, Any]) -> list[RunSpec]:
    """Multi-task variants, then the single-task references (``single_<task>``)."""
    from mtl_perception.train import load_train_config

    specs: list[RunSpec] = []
    selected = cfg.get("_selected")
    for variant in cfg["variants"]:
        if selected and variant not in selected:
            continue
        model = _variant_model(cfg, variant)
        model["name"] = f"ablation_{variant}"
        train = load_train_config({**copy.deepcopy(cfg["train"]), "model": model})
        specs.append(RunSpec(variant, "multi", model["decoder"]["type"], list(model["tasks"]), train))
    st = cfg["single_task"]
    base = _variant_model(cfg, st["base"])
    for task in st.get("tasks", []):
        name = f"single_{task}"
        if selected and name not in selected and not specs:
            continue
        if task not in base["tasks"]:
            raise ConfigError(f"single_task.tasks: {task!r} is not a task of the model config")
        model = copy.deepcopy(base)
        model["tasks"] = {task: model["tasks"][task]}  # the single-task switch: one task, same everything else
        model["name"] = f"ablation_{name}"
        train = load_train_config({**copy.deepcopy(cfg["train"]), "model": model})
        specs.append(RunSpec(name, "single", model["decoder"]["type"], [task], train))
    return specs


# ---------------------------------------------------------------------------------- training
def run_status(spec: RunSpec, run_dir: Path) -> str:
    """'done' (final checkpoint, same recipe), 'partial', 'stale' (other recipe) or 'new'."""
    marker = run_dir / RUN_MARKER
    if not marker.is_file():
        return "partial" if run_dir.exists() and any(run_dir.iterdir()) else "new"
    info = json.loads(marker.read_text())
    if info.get("fingerprint") != spec.fingerprint:
        return "stale"
    if info.get("complete") and (run_dir / "model.safetensors").is_file():
        return "done"
    return "partial"


def train_run(
    spec: RunSpec, run_dir: Path, resume: bool = False, force: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train one run (or skip it when complete). Returns {status, seconds, steps}."""
    from mtl_perception.train import Trainer
    from mtl_perception.train.data import build_train_data
    from mtl_perception.train.trainer import latest_checkpoint

    status = run_status(spec, run_dir)
    if status == "done" and not force:
        recorded = json.loads((run_dir / RUN_MARKER).read_text()).get("seconds", 0.0)
        return {"status": "skipped (complete)", "seconds": recorded, "steps": spec.train_cfg["steps"]}
    if status == "stale" and not force:
        raise ConfigError(
            f"{run_dir} holds a run of a different recipe (fingerprint mismatch); "
            "pass --force to retrain it or choose another --out"
        )
    resume_from = None
    if status == "partial" and resume and not force and latest_checkpoint(run_dir) is not None:
        resume_from = "latest"
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # our own run folder: a fresh start must not append to old logs
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = {"name": spec.name, "fingerprint": spec.fingerprint, "complete": False}
    atomic_write_text(run_dir / RUN_MARKER, json.dumps(marker, indent=2))
    t0 = time.perf_counter()
    dataset, transform = build_train_data(spec.train_cfg)
    trainer = Trainer(spec.train_cfg, run_dir, dataset, transform, resume=resume_from, device="cpu")
    try:
        summary = trainer.train(progress=progress)
    finally:
        trainer.close()
    seconds = time.perf_counter() - t0
    marker.update({"complete": True, "seconds": seconds, "last": summary.get("last", {})})
    atomic_write_text(run_dir / RUN_MARKER, json.dumps(marker, indent=2, default=float))
    return {"status": "resumed" if resume_from else "trained", "seconds": seconds, "steps": summary["step"]}


# ---------------------------------------------------------------------------------- evaluation
# generate-spec key -> dataset.json key, compared when a rendered folder is reused
_GENERATE_META = {
    "seed": "seed",
    "frames": "num_frames",
    "height": "height",
    "width": "width",
    "sequence_length": "sequence_length",
    "randomization": "randomization",
    "fps": "fps",
    "speed": "speed",
}


def render_synthetic_set(folder: str | Path, gen: dict[str, Any], progress: bool = False, desc: str = "render") -> Path:
    """Render a synthetic set (``gen``: ``write_dataset`` keywords with ``frames`` = count) into
    ``folder`` once.

    Atomic (tmp folder, then rename) so an interrupted render never looks complete. A folder that
    already holds a set is reused only if it is the same set (seed, count, size, sequence length,
    randomization, fps, speed, generator version): a cached set rendered from another spec would
    silently change what a run trains or is scored on while its fingerprint stays the same."""
    from mtl_perception.data.synthetic.constants import GENERATOR_VERSION
    from mtl_perception.data.synthetic_io import write_dataset

    folder = Path(folder)
    gen = dict(gen)
    gen.setdefault("randomization", "full")
    meta_path = folder / "dataset.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        want = {mk: gen[k] for k, mk in _GENERATE_META.items() if k in gen}
        want["generator_version"] = GENERATOR_VERSION
        diff = [f"{k} {meta.get(k)!r} (want {v!r})" for k, v in want.items() if meta.get(k) != v]
        if diff:
            raise ConfigError(
                f"{folder} holds another rendered set ({', '.join(diff)}); delete it or give this spec its own root"
            )
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} exists but holds no complete synthetic set (interrupted render?); delete it")
    n = int(gen.pop("frames"))
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=desc, unit="frame")
    try:
        write_dataset(tmp, n_frames=n, progress=(lambda i: bar.update(1)) if bar else None, **gen)
    finally:
        if bar:
            bar.close()
    if folder.exists():
        folder.rmdir()  # empty (checked above)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(folder)
    return folder


def ensure_eval_set(cfg: dict[str, Any], progress: bool = False) -> Path:
    """Render the held-out synthetic set once; the folder name encodes seed, size, count and (when
    not the default ``full``) the randomization."""
    ev = cfg["eval"]
    h, w, n, seed = int(ev["height"]), int(ev["width"]), int(ev["frames"]), int(ev["seed"])
    rand = str(ev.get("randomization", "full"))
    root = Path(ev.get("root", ".cache/synthetic/ablation_val"))
    if not root.is_absolute():
        root = Path.cwd() / root
    folder = root / (f"seed{seed}_{n}f_{h}x{w}" + ("" if rand == "full" else f"_{rand}"))
    gen = {
        "seed": seed,
        "frames": n,
        "height": h,
        "width": w,
        "sequence_length": int(ev.get("sequence_length", 16)),
        "randomization": rand,
    }
    return render_synthetic_set(folder, gen, progress=progress, desc="render eval set")


def make_engine(ckpt: Path, lat: dict[str, Any]) -> Any:
    """An ``InferenceEngine`` on the CPU from a ``{backend, precision, threads}`` mapping."""
    from mtl_perception.deploy.engine import InferenceEngine

    return InferenceEngine.create(
        ckpt,
        backend=lat.get("backend", "torch"),
        precision=lat.get("precision", "fp32"),
        device="cpu",
        threads=int(lat.get("threads", 2)),
    )


def evaluate_run(ckpt: Path, dataset: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """Headline metrics through the same path as ``mtl-perception eval`` (InferenceEngine,
    deploy form, postprocess at the frame's resolution)."""
    from mtl_perception.evaluate.runner import evaluate_engine

    engine = make_engine(ckpt, cfg["latency"])
    results, _ = evaluate_engine(
        engine,
        dataset,
        num_classes=len(engine.info.classes),
        max_depth=float(cfg["eval"].get("max_depth", 80.0)),
        keep_samples=0,
    )
    out: dict[str, Any] = {"frames": results["frames"], "engine": engine.describe()["backend"]}
    seg, dep = results.get("semseg"), results.get("depth")
    if seg:
        out.update(miou=seg["miou_present"], miou_all=seg["miou_all"], pixel_acc=seg["pixel_acc"])
    if dep:
        out.update(rmse=dep["rmse"], abs_rel=dep["abs_rel"], delta1=dep["delta1"])
    return out


def complexity(ckpt: Path, height: int, width: int) -> dict[str, Any]:
    """Params and GFLOPs of the deploy form the torch backend runs (BN folded), and train params."""
    from mtl_perception.model import deploy, load_checkpoint
    from mtl_perception.model.complexity import count_flops, count_params

    model = load_checkpoint(ckpt).eval()
    dep = deploy(model, fuse_bn=True)
    return {
        "params_m": count_params(dep)["total"] / 1e6,
        "params_train_m": count_params(model)["total"] / 1e6,
        "gflops": count_flops(dep, height, width)["total"],
        "decoder_gflops": count_flops(dep, height, width)["decoder"],
    }


def measure_latency(ckpt: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Batch-1 latency of ``engine.infer`` on a frame at the model's input size (no resize)."""
    import numpy as np

    lat = cfg["latency"]
    engine = make_engine(ckpt, lat)
    engine.warmup(int(lat.get("warmup", 3)))
    h, w = engine.input_size
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    samples = []
    for _ in range(int(lat.get("iters", 20))):
        t0 = time.perf_counter()
        engine.infer(frame)
        samples.append((time.perf_counter() - t0) * 1000)
    d = engine.describe()
    return {
        "p50_ms": statistics.median(samples),
        "min_ms": min(samples),
        "iters": len(samples),
        "backend": d["backend"],
        "precision": d["precision"],
        "threads": d.get("threads"),
        "loadavg_1m": os.getloadavg()[0],
    }


def delta_m_row(row: dict[str, Any], stl: dict[str, float], metrics: dict[str, bool]) -> float | None:
    """Delta_m (%) of one multi-task row against the single-task references (None if any is missing)."""
    from mtl_perception.evaluate.metrics import delta_m

    m = row.get("metrics", {})
    if any(m.get(k) is None or stl.get(k) is None for k in metrics):
        return None
    return delta_m({k: m[k] for k in metrics}, stl, metrics)


def single_task_references(rows: list[dict[str, Any]]) -> dict[str, float]:
    """{miou: from single_semseg, rmse/abs_rel: from single_depth} where those runs exist."""
    ref: dict[str, float] = {}
    by_name = {r["name"]: r for r in rows}
    for metric, task in STL_TASK_OF_METRIC.items():
        value = by_name.get(f"single_{task}", {}).get("metrics", {}).get(metric)
        if value is not None:
            ref[metric] = value
    return ref


# ---------------------------------------------------------------------------------- driver
def machine_info(threads: int) -> dict[str, Any]:
    """What the docs state about the machine a table was made on."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": threads,
    }


def run_ablation(
    cfg: dict[str, Any],
    out: str | Path,
    resume: bool = False,
    force: bool = False,
    latency: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    command: str = "",
) -> dict[str, Any]:
    """Train (or skip), evaluate, measure and assemble the results dict (see ``render_markdown``)."""
    import torch

    from mtl_perception.data.synthetic_io import SyntheticDataset

    t_start = time.perf_counter()
    threads = int(cfg["latency"].get("threads", 2))
    torch.set_num_threads(threads)  # one setting for training, eval and latency
    out = Path(out)
    specs = plan_runs(cfg)
    if not specs:
        raise ConfigError("no runs selected")
    n = len(specs)
    rows: list[dict[str, Any]] = []
    for i, spec in enumerate(specs, 1):
        log(f"[ablation {i}/{n}] train {spec.name} ({spec.decoder}, tasks {'+'.join(spec.tasks)})")
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "decoder": spec.decoder,
                "tasks": spec.tasks,
                "fingerprint": spec.fingerprint,
                "checkpoint": str(out / spec.name / "model.safetensors"),
                "train": train_run(spec, out / spec.name, resume=resume, force=force, progress=progress),
            }
        )
        log(f"[ablation {i}/{n}] {spec.name}: {rows[-1]['train']['status']} ({rows[-1]['train']['seconds']:.0f} s)")
    log("[ablation] render / open the held-out eval set")
    eval_root = ensure_eval_set(cfg, progress=progress)
    dataset = SyntheticDataset(str(eval_root))
    h, w = specs[0].train_cfg["model"]["input_size"]
    for i, row in enumerate(rows, 1):
        log(f"[ablation eval {i}/{n}] {row['name']} on {len(dataset)} held-out frames")
        ckpt = Path(row["checkpoint"])
        row["metrics"] = evaluate_run(ckpt, dataset, cfg)
        row["complexity"] = complexity(ckpt, h, w)
    # Latency last, in its own quick pass, so training does not overlap the timings.
    for i, row in enumerate(rows, 1):
        if latency:
            log(f"[ablation latency {i}/{n}] {row['name']}")
            row["latency"] = measure_latency(Path(row["checkpoint"]), cfg)
        else:
            row["latency"] = None
    stl = single_task_references(rows)
    for row in rows:
        if row["kind"] == "multi":
            row["delta_m"] = delta_m_row(row, stl, DELTA_METRICS)
            row["delta_m_abs_rel"] = delta_m_row(row, stl, DELTA_METRICS_ABSREL)
    tr = specs[0].train_cfg
    gen = tr["data"]["train"].get("generate") or {}
    results = {
        "meta": {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command,
            "recipe": cfg["_path"],
            "machine": machine_info(threads),
            "budget": {
                "steps": tr["steps"],
                "batch_size": tr["batch_size"],
                "input_size": [h, w],
                "backbone": tr["model"]["backbone"]["name"],
                "decoder_channels": tr["model"]["decoder"]["channels"],
                "train_frames": gen.get("frames"),
                "train_seed": gen.get("seed"),
                "seed": tr["seed"],
                "optim": tr["optim"],
                "schedule": tr["schedule"],
            },
            "eval": {
                "frames": len(dataset),
                "seed": int(cfg["eval"]["seed"]),
                "size": [int(cfg["eval"]["height"]), int(cfg["eval"]["width"])],
                "max_depth": float(cfg["eval"].get("max_depth", 80.0)),
                "root": str(eval_root),
            },
            "latency": {k: v for k, v in cfg["latency"].items()},
            "delta_m": {
                "metrics": DELTA_METRICS,
                "metrics_abs_rel": DELTA_METRICS_ABSREL,
                "references": stl,
                "definition": "100/T * sum_t (-1)^l_t (M_m,t - M_s,t) / M_s,t, l_t = 1 when lower is better",
            },
            "wall_s": time.perf_counter() - t_start,
            "train_s": sum(r["train"]["seconds"] for r in rows),
        },
        "runs": rows,
    }
    results["reading"] = reading(results)
    return results


# ---------------------------------------------------------------------------------- report
def _cmp(metric: str, a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return f"{metric}: n/a"
    lower = metric in ("RMSE", "AbsRel")
    better = a < b if lower else a > b
    word = "better" if better else ("equal" if a == b else "worse")
    fmt = ".2f" if metric in ("mIoU", "Delta_m") else ".3f" if metric == "RMSE" else ".4f"
    return f"{metric} {word} ({a:{fmt}} vs {b:{fmt}})"


def reading(results: dict[str, Any]) -> str:
    """One honest sentence: does mlore beat baseline on each metric in this run?"""
    by = {r["name"]: r for r in results["runs"]}
    b = results["meta"]["budget"]
    caveat = (
        f"Single seed, {b['steps']} steps of {b['backbone']} from scratch at {b['input_size'][0]}x"
        f"{b['input_size'][1]} on synthetic data and no variance estimate: these differences cannot be told apart "
        "from seed-to-seed noise, and none of this transfers to the papers' settings (ViT-S/B, pretrained, "
        "real data, long schedules)."
    )
    if "mlore" not in by or "baseline" not in by:
        return "mlore and baseline are not both in this run. " + caveat
    m, base = by["mlore"]["metrics"], by["baseline"]["metrics"]

    def pct(x):
        return None if x is None else 100 * x

    parts = [
        _cmp("mIoU", pct(m.get("miou")), pct(base.get("miou"))),
        _cmp("RMSE", m.get("rmse"), base.get("rmse")),
        _cmp("AbsRel", m.get("abs_rel"), base.get("abs_rel")),
        _cmp("Delta_m", by["mlore"].get("delta_m"), by["baseline"].get("delta_m")),
    ]
    wins = sum(" better " in p for p in parts[:3])
    return f"In this run mlore beats baseline on {wins} of 3 metrics: " + "; ".join(parts) + ". " + caveat


def _f(v: float | None, fmt: str, scale: float = 1.0) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * scale:{fmt}}"


def render_markdown(results: dict[str, Any], image: str | None = None) -> str:
    meta, runs = results["meta"], results["runs"]
    b, ev, mach = meta["budget"], meta["eval"], meta["machine"]
    lat_cfg = meta["latency"]
    lines = [
        "# Decoder ablation",
        "",
        "Generated by `mtl-perception ablation`; do not edit by hand. Regenerate:",
        "",
        "```bash",
        meta["command"] or "mtl-perception ablation --config config/train/ablation.yaml --docs docs/ablation.md",
        "```",
        "",
        f"- **Date**: {meta['date']}; recipe `{meta['recipe']}`. Training time of the {len(runs)} runs "
        f"(recorded when each was trained, under `nice -n 19` next to other jobs): {meta['train_s'] / 60:.1f} min; "
        f"wall time of the invocation that wrote this file: {meta['wall_s'] / 60:.1f} min.",
        f"- **Machine**: {mach['platform']}, {mach['processor']}, {mach['cpu_count']} CPU cores, no GPU, "
        f"torch {mach['torch']}, {mach['threads']} threads.",
        f"- **Budget (identical for every run)**: {b['steps']} steps x batch {b['batch_size']} at "
        f"{b['input_size'][0]}x{b['input_size'][1]}, `{b['backbone']}` from scratch (no pretrained weights), "
        f"decoder C={b['decoder_channels']}, AdamW lr {b['optim']['lr']}, {b['schedule']['type']} schedule with "
        f"{b['schedule'].get('warmup_steps', 0)} warm-up steps, seed {b['seed']}, {b['train_frames']} synthetic "
        f"training frames (seed {b['train_seed']}).",
        f"- **Evaluation**: {ev['frames']} held-out synthetic frames (seed {ev['seed']}, {ev['size'][0]}x"
        f"{ev['size'][1]}), through the same path as `mtl-perception eval` (InferenceEngine, "
        f"{lat_cfg.get('backend', 'torch')} backend, deploy form, {lat_cfg.get('precision', 'fp32')}); depth capped "
        f"at {ev['max_depth']:g} m. mIoU is over the classes present in the ground truth (`miou_present`).",
        "- **Params / GFLOPs**: deploy form as the torch backend runs it (re-parameterised, BN folded), batch 1, "
        "at the input size above; FLOPs by `torch.utils.flop_counter` (2 per multiply-add).",
        f"- **Latency**: batch-1 `InferenceEngine.infer` on one frame (preprocess + deploy-form forward), "
        f"p50 of {lat_cfg.get('iters', 20)} after {lat_cfg.get('warmup', 3)} warm-up runs, measured in a separate "
        "pass after all training. The machine is shared with other jobs, so these numbers are noisy "
        "(1-minute load average at each measurement is in the JSON); compare them with care.",
        "- **Delta_m** (Maninis et al.): 100/T * sum_t (-1)^l_t (M_m,t - M_s,t) / M_s,t with l_t = 1 when lower "
        "is better, against the single-task models (`single_semseg`: same backbone and baseline decoder trained on "
        "segmentation only; `single_depth`: depth only). Column `Delta_m` uses mIoU and RMSE (T = 2, as "
        "`mtl-perception eval --single-task`); `Delta_m (+AbsRel)` uses mIoU, RMSE and AbsRel (T = 3).",
        "",
        "| model | tasks | params (M) | GFLOPs | latency p50 (ms) | mIoU (%) | RMSE (m) | AbsRel | Delta_m (%) "
        "| Delta_m (+AbsRel) (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        m, c, lat = r["metrics"], r["complexity"], r.get("latency")
        ref = " (reference)" if r["kind"] == "single" else ""
        lines.append(
            f"| `{r['name']}`{ref} | {'+'.join(r['tasks'])} | {c['params_m']:.2f} | {c['gflops']:.2f} | "
            f"{_f(lat['p50_ms'] if lat else None, '.1f')} | {_f(m.get('miou'), '.2f', 100)} | "
            f"{_f(m.get('rmse'), '.3f')} | {_f(m.get('abs_rel'), '.4f')} | {_f(r.get('delta_m'), '+.2f')} | "
            f"{_f(r.get('delta_m_abs_rel'), '+.2f')} |"
        )
    if all(r.get("latency") is None for r in runs):
        lines += ["", "Latency was not measured in this invocation (`--no-latency`)."]
    lines += ["", f"**Reading.** {results['reading']}", ""]
    if image:
        lines += [f"![ablation]({image})", ""]
    lines += [
        "Per-run details (pixel accuracy, mIoU over all 19 classes, delta<1.25, train-form params, decoder "
        "GFLOPs, training time, latency minimum and load) are in `ablation.json`.",
        "",
    ]
    return "\n".join(lines)


def plot_results(results: dict[str, Any], path: Path) -> Path:
    """Bar chart of mIoU, RMSE, AbsRel and Delta_m per multi-task model (single-task as lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    multi = [r for r in results["runs"] if r["kind"] == "multi"]
    stl = results["meta"]["delta_m"]["references"]
    panels = [("mIoU (%)", "miou", 100), ("RMSE (m)", "rmse", 1), ("AbsRel", "abs_rel", 1), ("Delta_m (%)", None, 1)]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    names = [r["name"] for r in multi]
    for ax, (title, key, scale) in zip(axes, panels):
        vals = [(r.get("delta_m") if key is None else r["metrics"].get(key)) for r in multi]  # None -> plotted as 0
        ax.bar(names, [0 if v is None else v * scale for v in vals], color="#3a7ebf")
        if key and key in stl:
            ax.axhline(stl[key] * scale, color="#c0392b", ls="--", lw=1, label="single-task")
            ax.legend(fontsize=7)
        if key is None:
            ax.axhline(0, color="black", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path


def write_docs(
    results: dict[str, Any],
    md_path: str | Path,
    plot: bool = True,
    plot_fn: Callable[[dict[str, Any], Path], Path] | None = None,
    render_fn: Callable[[dict[str, Any], str | None], str] | None = None,
    json_default: Callable[[Any], Any] = float,
) -> dict[str, Path]:
    """Write ``<md>``, ``<md stem>.json`` next to it and optionally ``images/<md stem>.png``.
    ``plot_fn`` / ``render_fn`` default to this module's (the sim-to-real ablation passes its own)."""
    md = Path(md_path)
    md.parent.mkdir(parents=True, exist_ok=True)
    written = {"markdown": md, "json": md.with_suffix(".json")}
    image = None
    if plot:
        written["plot"] = (plot_fn or plot_results)(results, md.parent / "images" / f"{md.stem}.png")
        image = f"images/{md.stem}.png"
    atomic_write_json(written["json"], results, indent=2, default=json_default)
    atomic_write_text(md, (render_fn or render_markdown)(results, image))
    return written
