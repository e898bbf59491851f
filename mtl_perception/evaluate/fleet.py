"""Fleet-scale replay evaluation: many rosbag2 recordings, one merged report, sharded over ``torchrun``.

``mtl-perception replay-eval --bags DIR|GLOB --report DIR`` runs the offline replay of
:mod:`mtl_perception.evaluate.replay` (the node's pipeline, metrics as ``eval``) over every bag,
in one process or in as many as ``torchrun`` starts (``--nproc_per_node``, ``--nnodes``; the
process group of :func:`mtl_perception.train.distributed.init_distributed`: gloo on CPU, NCCL on
GPU, each local rank on its own GPU).

Exact merging. Each bag leaves its *mergeable sums*, not its metrics: the confusion matrix (and
out-of-range predictions per GT class), the depth error sums and valid-pixel count with the
per-distance bins, class pixel counts, predicted-depth histogram / sum / min / max, per-frame
latencies and frame medians (percentiles of the merged run are percentiles of all frames), GT
frame counts and counters (:func:`accumulator_state`). The states of all bags travel to rank 0
with c10d collectives (``all_gather_object``), where they are added up in the sorted bag order
(:func:`merge_states`) and the metrics are computed once from the sums by the same
``ReplayAccumulator.results`` as a single-bag run. Integer sums are exact anyway; the fixed
order makes the floating-point sums bit-identical whatever the number of processes and the bag
assignment (a ring all-reduce would add float64 in a world-size-dependent order, ~1e-16 apart).

Work assignment: rank 0 lists the bags (sorted), drops those already finished, and deals the rest
to ranks by size, largest first, each to the least loaded rank (ties: lowest rank); the plan is
broadcast, so it does not depend on each machine's directory listing order.

Resume: each finished bag's record (its state, its own metrics, its status) is written
atomically (temporary file + ``os.replace``) to ``<report>/bags/<name>.json`` as soon as it is
done, by the rank that ran it, and again by rank 0 after gathering (a report directory that is
not shared between machines still ends up complete on rank 0's). A rerun with the same settings
skips every recorded bag whose fingerprint (model hash, topics, tolerances, caps and the bag's
size and modification time) still matches and merges it as if it had just run; failed bags
are tried again; ``--force`` recomputes all. Resuming a crashed multi-machine run needs the report
directory on a shared filesystem (otherwise the bags finished on other machines run again).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtl_perception.atomic_io import atomic_write_json, atomic_write_text
from mtl_perception.evaluate.replay import ReplayAccumulator
from mtl_perception.evaluate.uncertainty import FIELDS as COV_FIELDS

if TYPE_CHECKING:
    from mtl_perception.pipeline import PipelineOptions

RECORD_VERSION = 1
STORAGE_SUFFIXES = (".mcap", ".db3")
#: counters that are maxima, not sums, when bags are merged
MAX_COUNTER_PREFIXES = ("gt_max_stamp_offset",)
KEEP_MESSAGES = 50


class FleetError(ValueError):
    """Bad fleet arguments (no bag found, a report directory in use): a one-line message."""


# ---------------------------------------------------------------------- bags
def _is_bag_dir(path: Path) -> bool:
    return (path / "metadata.yaml").is_file()


def _walk(root: Path, exclude: Path | None) -> list[Path]:
    """Bags under ``root``: directories with a metadata.yaml (not descended into), and every .mcap /
    .db3 file in other directories, each its own bag (fleets often keep one .mcap per drive; a
    recording directory whose metadata.yaml was lost is evaluated through its storage file; a split
    one, several files, needs ``--bag DIR``)."""
    if exclude is not None and root.resolve() == exclude:
        return []
    if root.is_file():
        return [root] if root.suffix in STORAGE_SUFFIXES else []
    if not root.is_dir():
        return []
    if _is_bag_dir(root):
        return [root]
    found: list[Path] = []
    for child in sorted(root.iterdir()):
        if child.is_dir() or child.suffix in STORAGE_SUFFIXES:
            found += _walk(child, exclude)
    return found


def discover_bags(specs: list[str], exclude: str | Path | None = None) -> list[Path]:
    """The bags named by ``specs`` (each a bag, a directory searched recursively, or a glob), sorted,
    without duplicates; ``exclude`` (the report directory) is never searched."""
    ex = Path(exclude).resolve() if exclude is not None else None
    found: dict[Path, None] = {}
    for spec in specs:
        matches = [Path(m) for m in sorted(glob.glob(spec))] if glob.has_magic(spec) else [Path(spec)]
        for m in matches:
            for bag in _walk(m, ex):
                found.setdefault(bag.resolve(), None)
    return sorted(found, key=str)


def bag_names(paths: list[Path]) -> list[str]:
    """A unique, filesystem-safe name per bag: its path below the bags' common parent, ``/`` -> ``__``."""
    if not paths:
        return []
    parents = [p.parent for p in paths]
    common = Path(os.path.commonpath([str(p) for p in parents])) if len(paths) > 1 else paths[0].parent
    names: list[str] = []
    for p in paths:
        rel = str(p.relative_to(common)) if p.is_relative_to(common) else p.name
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace(os.sep, "__")).strip("._") or "bag"
        if name in names:
            name += "_" + hashlib.sha1(str(p).encode()).hexdigest()[:8]
        names.append(name)
    return names


def bag_signature(path: Path) -> dict[str, int]:
    """Total size and newest modification time of a bag's files (a changed bag is evaluated again)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [f.stat() for f in files]
    return {"bytes": sum(s.st_size for s in stats), "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


# ---------------------------------------------------------------------- mergeable sums
def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def accumulator_state(acc: ReplayAccumulator) -> dict[str, Any]:
    """Everything the metrics of ``acc`` are computed from, as JSON-safe sums (floats round-trip
    exactly through ``json``). Samples (images) are not part of it."""
    dep = acc.dep
    return {
        "class_names": list(acc.class_names),
        "frames": acc.frames,
        "gt_semantic_frames": acc.gt_semantic_frames,
        "gt_depth_frames": acc.gt_depth_frames,
        "error_counts": dict(acc.error_counts),
        "errors": list(acc.errors),
        "warnings": list(acc.warnings),
        "counters": dict(acc.counters),
        "latency": {k: [float(x) for x in v] for k, v in acc.latency.items()},
        "per_topic": dict(acc.per_topic),
        "intrinsics": dict(acc.intrinsics),
        "shapes": dict(acc.shapes),
        "class_pixels": acc.class_pixels.tolist(),
        "depth_hist": acc.depth_hist.tolist(),
        "depth_pixels": int(acc.depth_pixels),
        "depth_valid": int(acc.depth_valid),
        "depth_beyond_range": int(acc.depth_beyond_range),
        "depth_sum": float(acc.depth_sum),
        "depth_min": _finite_or_none(acc.depth_min),
        "depth_max": _finite_or_none(acc.depth_max),
        "depth_medians": [float(x) for x in acc.depth_medians],
        "seg": {
            "num_classes": acc.seg.num_classes,
            "ignore_index": acc.seg.ignore_index,
            "confusion": acc.seg.confusion.tolist(),
            "extra_fn": acc.seg._extra_fn.tolist(),
        },
        "dep": {
            "min_depth": dep.min_depth,
            "max_depth": dep.max_depth,
            "bin_edges": dep.bin_edges.tolist(),
            "n": int(dep.n),
            "sums": {k: float(v) for k, v in dep.sums.items()},
            "bin_n": dep.bin_n.tolist(),
            "bin_abs": dep.bin_abs.tolist(),
            "bin_abs_rel": dep.bin_abs_rel.tolist(),
        },
        "cov": acc.cov.state().tolist(),  # depth interval coverage sums (evaluate/uncertainty.py FIELDS)
    }


def _add_counts(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def merge_states(states: list[dict[str, Any]], labels: list[str] | None = None) -> dict[str, Any]:
    """Add up bag states in the given order (the caller fixes it: sorted bags). ``labels`` (bag names)
    prefix the merged errors and warnings. Counters named ``gt_max_*`` take the maximum."""
    if not states:
        raise ValueError("merge_states needs at least one state")
    labels = labels or [""] * len(states)
    first = states[0]
    for s in states[1:]:
        if s["class_names"] != first["class_names"] or s["seg"]["num_classes"] != first["seg"]["num_classes"]:
            raise ValueError("bags evaluated with different class sets cannot be merged")
        if s["dep"]["bin_edges"] != first["dep"]["bin_edges"]:
            raise ValueError("bags evaluated with different depth caps cannot be merged")
    m: dict[str, Any] = json.loads(json.dumps(first))  # deep copy, same structure
    for key in ("frames", "gt_semantic_frames", "gt_depth_frames", "depth_pixels", "depth_valid"):
        m[key] = sum(s[key] for s in states)
    # states written before sky was beyond range (2026-12-04) have no such pixels
    m["depth_beyond_range"] = sum(s.get("depth_beyond_range", 0) for s in states)
    depth_sum = 0.0
    for s in states:
        depth_sum += s["depth_sum"]
    m["depth_sum"] = depth_sum
    mins = [s["depth_min"] for s in states if s["depth_min"] is not None]
    maxs = [s["depth_max"] for s in states if s["depth_max"] is not None]
    m["depth_min"] = min(mins) if mins else None
    m["depth_max"] = max(maxs) if maxs else None
    for key in ("class_pixels", "depth_hist"):
        m[key] = np.sum([np.asarray(s[key], np.int64) for s in states], axis=0).tolist()
    m["seg"]["confusion"] = np.sum([np.asarray(s["seg"]["confusion"], np.int64) for s in states], axis=0).tolist()
    m["seg"]["extra_fn"] = np.sum([np.asarray(s["seg"]["extra_fn"], np.int64) for s in states], axis=0).tolist()
    dep = m["dep"]
    dep["n"] = sum(s["dep"]["n"] for s in states)
    for k in dep["sums"]:
        total = 0.0
        for s in states:  # plain left-to-right float64 sums, in the given order
            total += s["dep"]["sums"][k]
        dep["sums"][k] = total
    cov = np.zeros(len(first.get("cov") or COV_FIELDS), np.float64)
    for s in states:  # left-to-right like the depth sums; records from before coverage count zero
        cov = cov + np.asarray(s.get("cov") or np.zeros(len(COV_FIELDS)), np.float64)
    m["cov"] = cov.tolist()
    dep["bin_n"] = np.sum([np.asarray(s["dep"]["bin_n"], np.int64) for s in states], axis=0).tolist()
    for key in ("bin_abs", "bin_abs_rel"):
        total_arr = np.zeros(len(dep[key]), np.float64)
        for s in states:
            total_arr = total_arr + np.asarray(s["dep"][key], np.float64)
        dep[key] = total_arr.tolist()
    for key in ("error_counts", "per_topic", "intrinsics", "shapes"):
        m[key] = {}
        for s in states:
            _add_counts(m[key], s[key])
    m["counters"] = {}
    for s in states:
        for k, v in s["counters"].items():
            if k.startswith(MAX_COUNTER_PREFIXES):
                m["counters"][k] = max(m["counters"].get(k, v), v)
            else:
                m["counters"][k] = m["counters"].get(k, 0) + v
    m["latency"] = {}
    m["depth_medians"] = []
    m["errors"], m["warnings"] = [], []
    for label, s in zip(labels, states):
        for k, v in s["latency"].items():
            m["latency"].setdefault(k, []).extend(v)
        m["depth_medians"].extend(s["depth_medians"])
        pre = f"[{label}] " if label else ""
        m["errors"].extend(pre + e for e in s["errors"])
        m["warnings"].extend(pre + w for w in s["warnings"])
    m["errors"] = m["errors"][:KEEP_MESSAGES]
    return m


def accumulator_from_state(state: dict[str, Any], palette: Any = None) -> ReplayAccumulator:
    """A :class:`ReplayAccumulator` holding ``state`` (no samples): its ``results`` / ``write_report``
    give the metrics and the report of those sums."""
    dep_s = state["dep"]
    acc = ReplayAccumulator(
        class_names=list(state["class_names"]), palette=palette, max_depth=dep_s["max_depth"], keep_samples=0
    )
    for key in ("frames", "gt_semantic_frames", "gt_depth_frames", "depth_pixels", "depth_valid", "depth_sum"):
        setattr(acc, key, state[key])
    acc.depth_beyond_range = int(state.get("depth_beyond_range", 0))
    for key in ("error_counts", "counters", "per_topic", "intrinsics", "shapes"):
        setattr(acc, key, dict(state[key]))
    acc.errors, acc.warnings = list(state["errors"]), list(state["warnings"])
    acc.latency = {k: list(v) for k, v in state["latency"].items()}
    acc.depth_medians = list(state["depth_medians"])
    acc.depth_min = state["depth_min"] if state["depth_min"] is not None else float("inf")
    acc.depth_max = state["depth_max"] if state["depth_max"] is not None else float("-inf")
    acc.class_pixels = np.asarray(state["class_pixels"], np.int64)
    acc.depth_hist = np.asarray(state["depth_hist"], np.int64)
    seg = state["seg"]
    acc.seg.num_classes, acc.seg.ignore_index = seg["num_classes"], seg["ignore_index"]
    n = seg["num_classes"]
    acc.seg.confusion = np.asarray(seg["confusion"], np.int64).reshape(n, n)
    acc.seg._extra_fn = np.asarray(seg["extra_fn"], np.int64).reshape(n)
    d = acc.dep
    d.min_depth = dep_s["min_depth"]
    d.bin_edges = np.asarray(dep_s["bin_edges"], np.float64)
    d.n = dep_s["n"]
    d.sums = dict(dep_s["sums"])
    d.bin_n = np.asarray(dep_s["bin_n"], np.int64)
    d.bin_abs = np.asarray(dep_s["bin_abs"], np.float64)
    d.bin_abs_rel = np.asarray(dep_s["bin_abs_rel"], np.float64)
    if state.get("cov"):
        acc.cov.merge(np.asarray(state["cov"], np.float64))
    return acc


# ---------------------------------------------------------------------- one bag
@dataclass(frozen=True)
class BagSettings:
    """What decides a bag's numbers besides the model (part of the resume fingerprint)."""

    image_topic: str | None = None
    gt_semantic_topic: str | None = None
    gt_depth_topic: str | None = None
    camera_info_topic: str | None = None
    stamp_tolerance: float = 0.005
    max_frames: int | None = None
    max_depth: float = 80.0


def _metrics_row(results: dict[str, Any]) -> dict[str, Any]:
    seg, dep = results.get("semseg") or {}, results.get("depth") or {}
    lat = results.get("latency_ms", {}).get("total") or {}
    return {
        "frames": results.get("frames", 0),
        "gt_frames": results.get("gt_frames", {}),
        "miou_present": seg.get("miou_present"),
        "miou_all": seg.get("miou_all"),
        "pixel_acc": seg.get("pixel_acc"),
        "rmse": dep.get("rmse"),
        "abs_rel": dep.get("abs_rel"),
        "delta1": dep.get("delta1"),
        "latency_total_p50_ms": lat.get("p50"),
        "error_counts": results.get("error_counts", {}),
    }


def _json_safe(obj: Any) -> Any:
    from mtl_perception.evaluate.report import _json_default

    return json.loads(json.dumps(obj, default=_json_default))


def evaluate_bag(path: Path, settings: BagSettings, get_pipeline: Callable[[], Any]) -> dict[str, Any]:
    """Replay one bag (the single-bag ``replay-eval`` path) and return its record: ``status`` (ok /
    partial / failed), ``error`` (why it failed or the first error), its metrics and its ``state``
    (None when nothing was evaluated). Bad data never raises; ``KeyboardInterrupt`` does."""
    from mtl_perception.data.bags import (
        BagError,
        find_camera_info_topics,
        find_gt_topics,
        find_image_topic,
        open_bag,
    )
    from mtl_perception.evaluate.replay import ReplaySpec, replay_bag

    t0 = time.perf_counter()
    record: dict[str, Any] = {"bag": str(path), "status": "failed", "error": None, "state": None}
    try:
        bag = open_bag(path)
    except BagError as exc:
        record["error"] = str(exc)
        return {**record, "wall_s": time.perf_counter() - t0}
    try:
        with bag:
            record["storage"] = bag.storage_id
            image_topics = find_image_topic(bag, settings.image_topic)
            gt_sem, gt_dep = find_gt_topics(bag, settings.gt_semantic_topic, settings.gt_depth_topic)
            camera_info = find_camera_info_topics(bag, image_topics, settings.camera_info_topic)
            pipeline = get_pipeline()
            acc = ReplayAccumulator(
                class_names=list(pipeline.engine.info.classes),
                palette=pipeline.engine.info.palette,
                max_depth=settings.max_depth,
                keep_samples=0,
            )
            acc.warnings.extend(bag.warnings)
            spec = ReplaySpec(
                image_topics, gt_sem, gt_dep, settings.stamp_tolerance, settings.max_frames, camera_info=camera_info
            )
            record.update({"image_topics": image_topics, "gt_semantic_topic": gt_sem, "gt_depth_topic": gt_dep})
            try:
                replay_bag(bag, pipeline, spec, acc)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # an unexpected failure mid-bag: keep what was evaluated
                acc.error("internal", f"{exc.__class__.__name__}: {exc}")
            acc.warnings.extend(w for w in bag.warnings if w not in acc.warnings)
    except BagError as exc:
        record["error"] = str(exc)
        return {**record, "wall_s": time.perf_counter() - t0}
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        record["error"] = f"{exc.__class__.__name__}: {exc}"
        return {**record, "wall_s": time.perf_counter() - t0}
    results = acc.results()
    record["status"] = results["status"]
    if results["status"] == "failed":
        record["error"] = "no frame could be evaluated: " + "; ".join(acc.errors[:3])
    elif acc.errors:
        record["error"] = acc.errors[0]
    record["state"] = accumulator_state(acc) if acc.frames else None
    record["metrics"] = _json_safe(_metrics_row(results))
    record["wall_s"] = time.perf_counter() - t0
    return record


# ---------------------------------------------------------------------- files
def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file in the same directory, then ``os.replace`` it into place."""
    atomic_write_json(path, obj, newline=False)


def load_record(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """A finished bag's record if it is readable, of this version and fingerprint, and not failed."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("version") != RECORD_VERSION or rec.get("fingerprint") != fingerprint or rec.get("status") == "failed":
        return None
    return rec


def assign(sizes: list[int], world: int) -> list[list[int]]:
    """Deal items to ``world`` ranks: largest first, each to the least loaded rank (ties: lowest rank,
    then item order). Deterministic; each rank's list is in item order."""
    load = [0] * world
    plan: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        r = min(range(world), key=lambda r: (load[r], len(plan[r]), r))
        plan[r].append(i)
        load[r] += max(sizes[i], 1)
    return [sorted(p) for p in plan]


# ---------------------------------------------------------------------- progress across ranks
class Progress:
    """A progress line across all bags on rank 0: every rank adds finished bags to a counter in the
    process group's key-value store (the c10d store torchrun set up); rank 0 shows it."""

    KEY = "mtl_perception/replay_eval/bags_done"

    def __init__(self, total: int, rank: int, enabled: bool) -> None:
        self.total, self.rank, self.store, self.bar = total, rank, None, None
        self._local = 0
        self._last_poll = 0.0
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                self.store = dist.distributed_c10d._get_default_store()
        except Exception:  # no store: rank 0 counts its own bags only
            self.store = None
        if rank == 0 and enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="replay-eval bags", unit="bag", file=sys.stderr)

    def done_count(self) -> int:
        if self.store is not None:
            return int(self.store.add(self.KEY, 0))
        return self._local

    def bag_done(self) -> None:
        self._local += 1
        if self.store is not None:
            self.store.add(self.KEY, 1)
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if not force and now - self._last_poll < 0.5:
            return
        self._last_poll = now
        n = self.done_count()
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def wait_all(self, timeout_s: float = 7 * 24 * 3600) -> None:
        """Rank 0, its own bags done: keep the line moving until every rank is done."""
        if self.bar is None or self.store is None:
            return
        end = time.monotonic() + timeout_s
        while self.done_count() < self.total and time.monotonic() < end:
            time.sleep(0.2)
            self.refresh(force=True)

    def close(self) -> None:
        if self.bar is not None:
            self.refresh(force=True)
            self.bar.close()


# ---------------------------------------------------------------------- the run
@dataclass
class FleetConfig:
    bags: list[str]
    report: str | None
    force: bool
    settings: BagSettings
    checkpoint: str | None
    backend: str
    precision: str
    cache_dir: str | None
    progress: bool = True
    strict: bool = False  # exit 1 when any bag is partial or failed
    camera_height: float = 0.0  # metres above the road (the node's camera_height); 0 = off
    pipeline: PipelineOptions | None = None  # the pipeline's depth options; None = the node's defaults

    def pipeline_options(self) -> PipelineOptions:
        from mtl_perception.pipeline import PipelineOptions

        return self.pipeline or PipelineOptions()


def _collective(info: Any) -> Any:
    import torch.distributed as dist

    return dist if info.enabled else None


def _broadcast(info: Any, obj: Any) -> Any:
    dist = _collective(info)
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(info: Any, obj: Any) -> list[Any]:
    dist = _collective(info)
    if dist is None:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def _init_process_group(init_distributed: Callable[..., Any]) -> tuple[Any, str | None]:
    """torchrun's group (``init_distributed``: NCCL with one GPU per local rank, gloo on CPU) and the
    engine's device. More local ranks than GPUs (e.g. 2 processes on 1 GPU: NCCL refuses two ranks on
    one device) -> gloo, ranks sharing the GPUs round-robin; only Python objects travel anyway."""
    import torch

    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if n_gpu and local_world > n_gpu:
        info = init_distributed("cpu")
        return info, f"cuda:{info.local_rank % n_gpu}"
    info = init_distributed()
    return info, (str(info.device) if info.device.type == "cuda" else None)


def _plan(cfg: FleetConfig, world: int, model_hash: str) -> dict[str, Any]:
    """Rank 0: bags, names, fingerprints, finished records, the assignment of the rest."""
    from mtl_perception.evaluate.replay import ReportDirError, prepare_report_dir

    out = Path(cfg.report) if cfg.report else None
    if out is not None and out.is_dir() and any(out.iterdir()) and not (out / "bags").is_dir() and not cfg.force:
        raise FleetError(
            f"--report {out} exists, is not empty and holds no fleet run (no bags/); pass another directory or --force"
        )
    if out is not None:
        try:
            prepare_report_dir(out, force=True)
        except ReportDirError as exc:
            raise FleetError(str(exc)) from exc
    paths = discover_bags(cfg.bags, exclude=out)
    if not paths:
        raise FleetError(
            f"no bag found in {' '.join(cfg.bags)} (a bag: a directory with metadata.yaml, or a .mcap/.db3)"
        )
    names = bag_names(paths)
    settings = asdict(cfg.settings)
    sigs = [bag_signature(p) for p in paths]
    # everything that changes a bag's numbers: a record made under other settings is not reused
    fps = [
        {
            "model_hash": model_hash,
            "precision": cfg.precision,
            "settings": settings,
            "camera_height": cfg.camera_height,
            "pipeline": cfg.pipeline_options().as_dict(),
            "bag": str(p),
            "signature": s,
        }
        for p, s in zip(paths, sigs)
    ]
    finished: dict[int, dict[str, Any]] = {}
    if out is not None and not cfg.force:
        for i, (name, fp) in enumerate(zip(names, fps)):
            rec = load_record(out / "bags" / f"{name}.json", fp)
            if rec is not None:
                finished[i] = rec
    todo = [i for i in range(len(paths)) if i not in finished]
    shares = assign([sigs[i]["bytes"] for i in todo], world)
    return {
        "paths": [str(p) for p in paths],
        "names": names,
        "fingerprints": fps,
        "finished": finished,
        "assignment": [[todo[j] for j in share] for share in shares],
    }


def run_fleet(cfg: FleetConfig) -> tuple[dict[str, Any] | None, int]:
    """Evaluate the fleet; on rank 0 returns (merged results with the per-bag table, exit code), on
    other ranks (None, the same exit code). Exit: 0 at least one bag evaluated (partial / failed bags
    in the table and the counts); 2 every bag failed; ``strict``: 1 when any bag is partial or failed.
    Raises :class:`FleetError` on bad arguments."""
    from mtl_perception.deploy.engine import EngineError, InferenceEngine
    from mtl_perception.pipeline import FramePipeline
    from mtl_perception.train.distributed import cleanup, init_distributed

    t_start = time.perf_counter()
    info, device = _init_process_group(init_distributed)
    try:
        # every rank builds its engine (once, reused over its bags); any failure stops all ranks
        engine, err = None, None
        try:
            engine = InferenceEngine.create(
                cfg.checkpoint, backend=cfg.backend, precision=cfg.precision, device=device, cache_dir=cfg.cache_dir
            )
        except EngineError as exc:
            err = str(exc)
        errs = [e for e in _gather(info, err) if e]
        if errs:
            raise FleetError(errs[0])
        assert engine is not None
        plan, err = None, None
        if info.is_main:
            try:
                plan = _plan(cfg, info.world_size, engine.info.model_hash)
            except FleetError as exc:
                err = str(exc)
        plan, err = _broadcast(info, (plan, err))
        if err:
            raise FleetError(err)
        warmup_s = round(engine.warmup(2), 3)
        pipeline = FramePipeline.from_options(
            engine, cfg.pipeline_options(), output_resolution="input", camera_height=cfg.camera_height or None
        )
        out = Path(cfg.report) if cfg.report else None
        mine = plan["assignment"][info.rank]
        n_todo = sum(len(a) for a in plan["assignment"])
        progress = Progress(n_todo, info.rank, cfg.progress)
        done: dict[int, dict[str, Any]] = {}
        try:
            for i in mine:
                rec = evaluate_bag(Path(plan["paths"][i]), cfg.settings, lambda: pipeline)
                rec.update(
                    {
                        "version": RECORD_VERSION,
                        "name": plan["names"][i],
                        "fingerprint": plan["fingerprints"][i],
                        "rank": info.rank,
                        "host": os.uname().nodename,
                    }
                )
                if out is not None:
                    write_json_atomic(out / "bags" / f"{rec['name']}.json", rec)
                done[i] = rec
                progress.bag_done()
            progress.wait_all()
        finally:
            progress.close()
        gathered = _gather(info, done)
        if not info.is_main:
            return None, int(_broadcast(info, None))
        records: dict[int, dict[str, Any]] = {}
        for part in gathered:
            records.update(part)
        if out is not None:  # a report dir not shared between machines still gets every bag's record
            for rec in records.values():
                path = out / "bags" / f"{rec['name']}.json"
                if rec.get("host") != os.uname().nodename or not path.is_file():
                    write_json_atomic(path, rec)
        for i, rec in plan["finished"].items():
            records[i] = {**rec, "resumed": True}
        try:
            results, code = _merge_report(cfg, plan, records, engine, info.world_size, warmup_s, t_start)
        except BaseException:
            _broadcast(info, 2)  # the other ranks wait for the exit code: do not leave them hanging
            raise
        _broadcast(info, code)
        return results, code
    finally:
        cleanup(info)


def _merge_report(
    cfg: FleetConfig,
    plan: dict[str, Any],
    records: dict[int, dict[str, Any]],
    engine: Any,
    world: int,
    warmup_s: float,
    t_start: float,
) -> tuple[dict[str, Any], int]:
    order = sorted(records)  # the sorted bag order: the merge does not depend on ranks
    rows = []
    for i in order:
        rec = records[i]
        rows.append(
            {
                "name": rec["name"],
                "bag": rec["bag"],
                "status": rec["status"],
                **(rec.get("metrics") or _metrics_row({})),
                "error": rec.get("error"),
                "wall_s": round(rec.get("wall_s", 0.0), 3),
                "rank": rec.get("rank"),
                "resumed": bool(rec.get("resumed", False)),
            }
        )
    with_state = [i for i in order if records[i].get("state")]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "partial", "failed")}
    desc = engine.describe()
    meta = {
        "bags": len(rows),
        "bags_ok": counts["ok"],
        "bags_partial": counts["partial"],
        "bags_failed": counts["failed"],
        "bags_resumed": sum(r["resumed"] for r in rows),
        "world_size": world,
        "checkpoint": str(engine.info.extra.get("checkpoint")),
        "decoder": engine.info.decoder,
        "model_hash": engine.info.model_hash,
        **{k: desc[k] for k in ("backend", "precision", "device") if k in desc},
        "network_input": "x".join(map(str, engine.input_size)),
        "stamp_tolerance_s": cfg.settings.stamp_tolerance,
        "camera_height_m": cfg.camera_height,
        **cfg.pipeline_options().as_dict(),
        "warmup_s": warmup_s,
    }
    if with_state:
        merged = merge_states([records[i]["state"] for i in with_state], [records[i]["name"] for i in with_state])
    else:
        merged = accumulator_state(
            ReplayAccumulator(class_names=list(engine.info.classes), max_depth=cfg.settings.max_depth)
        )
    acc = accumulator_from_state(merged, palette=engine.info.palette)
    for r in rows:
        if r["status"] == "failed":
            acc.error("bag_failed", f"[{r['name']}] {r['error']}")
    status = "ok" if counts["partial"] == counts["failed"] == 0 else "partial"
    if not with_state:
        status = "failed"
    meta["wall_s"] = round(time.perf_counter() - t_start, 3)
    results = acc.results(meta, status=status)
    results["bags"] = rows
    code = 2 if status == "failed" else (1 if cfg.strict and status != "ok" else 0)
    if cfg.report:
        out = Path(cfg.report)
        results["meta"]["report"] = str(out / "report.md")
        title = f"Fleet replay evaluation: {len(rows)} bags"
        acc.write_report(out, title, results)
        table = bag_table_markdown(rows)
        report = out / "report.md"
        atomic_write_text(report, report.read_text() + "\n" + "\n".join(table) + "\n")
        atomic_write_text(out / "bags.md", "\n".join([f"# {title}", "", *table]) + "\n")
        write_json_atomic(out / "bags.json", _json_safe(rows))
    return _json_safe(results), code


def _pct(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.2f}"


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def bag_table_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Per bag",
        "",
        "| bag | status | frames | mIoU present % | pixel acc % | RMSE m | AbsRel | delta<1.25 % | "
        "latency p50 ms | s | rank | resumed | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        err = (r.get("error") or "").replace("|", "\\|").replace("\n", " ")
        if len(err) > 160:
            err = err[:157] + "..."
        lines.append(
            f"| {r['name']} | {r['status']} | {r['frames']} | {_pct(r['miou_present'])} | {_pct(r['pixel_acc'])} | "
            f"{_num(r['rmse'], '.3f')} | {_num(r['abs_rel'], '.4f')} | {_pct(r['delta1'])} | "
            f"{_num(r['latency_total_p50_ms'], '.1f')} | {r['wall_s']:.1f} | {r['rank']} | "
            f"{'yes' if r['resumed'] else ''} | {err} |"
        )
    return lines
