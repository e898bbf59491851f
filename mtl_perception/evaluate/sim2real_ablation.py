"""Sim-to-real ingredient ablation (issue 11 item 4): what each ingredient of the sim-to-real
recipe buys on the real frames.

One shared small-budget recipe, derived from a train recipe (``recipe:``, e.g.
``config/train/mlore_lite0.yaml``: same model, same optimiser, the budget cut down by ``train:``),
and *arms*, each the full recipe with one ingredient switched off through overrides of the model
config (``model``), the train recipe (``train``) and its data section (``data``, shorthand for
``train.data``). Every arm is trained with the decoder ablation's machinery (``evaluate.ablation``:
run folders, recipe fingerprints, skipping finished runs, ``--resume``), then scored

* on the real frames of ``../shared/realdata`` through ``evaluate.realdata`` (``FramePipeline``
  over an ``InferenceEngine``, the node's exact path), and
* on held-out synthetic frames rendered from a seed no training set uses,

and compared with the reference arm (``full``). ``write_docs`` writes the markdown table and JSON.
The recipe is ``config/train/sim2real_ablation.yaml``; ``mtl-perception ablation`` runs it.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import numbers
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mtl_perception.atomic_io import atomic_savefig
from mtl_perception.evaluate import ablation
from mtl_perception.evaluate.ablation import (
    RunSpec,
    ensure_eval_set,
    evaluate_run,
    machine_info,
    make_engine,
    render_synthetic_set,
    train_run,
)
from mtl_perception.model.config import merge_config
from mtl_perception.model.errors import ConfigError

SECTIONS = ("recipe", "train", "model", "arms", "reference", "eval", "realdata", "engine")
ARM_KEYS = ("about", "model", "train", "data")
DEFAULT_REALDATA = "../shared/realdata"

#: headline metrics: key -> (column label, higher is better, scale, format). "pp" columns are
#: fractions shown in percent; their deltas are percentage points.
METRICS: dict[str, tuple[str, bool, float, str]] = {
    "cs_miou": ("Cityscapes mIoU (%)", True, 100.0, ".1f"),
    "cs_pixel_acc": ("Cityscapes pixel acc (%)", True, 100.0, ".1f"),
    "camvid_miou": ("CamVid mIoU-8 (%)", True, 100.0, ".1f"),
    "depth_abs_rel": ("depth AbsRel", False, 1.0, ".3f"),
    "depth_delta1": ("depth d<1.25", True, 1.0, ".3f"),
    "depth_abs_rel_med": ("depth AbsRel (med-scaled)", False, 1.0, ".3f"),
    "depth_delta1_med": ("depth d<1.25 (med-scaled)", True, 1.0, ".3f"),
    "syn_miou": ("synthetic mIoU (%)", True, 100.0, ".1f"),
    "syn_abs_rel": ("synthetic AbsRel", False, 1.0, ".3f"),
}
REAL_METRICS = tuple(k for k in METRICS if not k.startswith("syn_"))


# ---------------------------------------------------------------------------------- config
def is_arms_recipe(path: str | Path) -> bool:
    """True when the YAML at ``path`` is an arms recipe (this module) rather than a decoder ablation."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False  # let the decoder loader report the problem in its own words
    return isinstance(raw, dict) and "arms" in raw


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {str(path)!r} must be a YAML mapping")
    return raw


def load_sim2real_config(
    path: str | Path,
    steps: int | None = None,
    eval_frames: int | None = None,
    arms: list[str] | None = None,
    realdata: str | None = None,
    no_realdata: bool = False,
) -> dict[str, Any]:
    """Read and validate an arms recipe; apply CLI overrides (steps, eval frames, arm subset,
    realdata folder). The reference arm is always kept when a subset is chosen: every other arm
    is reported as a delta against it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ablation config {str(p)!r} not found; see config/train/sim2real_ablation.yaml")
    raw = _read_yaml(p, "ablation config")
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown sim2real ablation config key(s) {sorted(unknown)}; valid: {list(SECTIONS)}")
    for key in ("arms", "eval"):
        if not isinstance(raw.get(key), dict) or not raw[key]:
            raise ConfigError(f"sim2real ablation config: {key!r} must be a non-empty mapping")
    cfg: dict[str, Any] = copy.deepcopy(raw)
    base_dir = p.resolve().parent
    cfg["_base_dir"], cfg["_path"] = str(base_dir), str(p)
    cfg["train"] = _mapping(cfg.get("train"), "train")
    cfg["model"] = _mapping(cfg.get("model"), "model")
    cfg["engine"] = {"backend": "torch", "precision": "fp32", "threads": 2, **_mapping(cfg.get("engine"), "engine")}
    cfg["realdata"] = {
        "root": DEFAULT_REALDATA,
        "sets": None,
        "max_depth": 80.0,
        **_mapping(cfg.get("realdata"), "realdata"),
    }
    if "model" in cfg["train"]:
        raise ConfigError("sim2real ablation config: train.model comes from the recipe; put model keys under 'model'")
    ref = cfg.setdefault("reference", "full")
    if ref not in cfg["arms"]:
        raise ConfigError(f"reference arm {ref!r} is not one of the arms {list(cfg['arms'])}")
    for name, arm in cfg["arms"].items():
        arm = cfg["arms"][name] = _mapping(arm, f"arms.{name}")
        bad = set(arm) - set(ARM_KEYS)
        if bad:
            raise ConfigError(f"arms.{name}: unknown key(s) {sorted(bad)}; valid: {list(ARM_KEYS)}")
        for key in ("model", "train", "data"):
            _mapping(arm.get(key), f"arms.{name}.{key}")
        if "model" in (arm.get("train") or {}):
            raise ConfigError(f"arms.{name}: model overrides go under arms.{name}.model, not train.model")

    # the recipe the arms derive from (its model path is relative to the recipe file)
    rpath = Path(str(cfg.get("recipe") or ""))
    if not rpath.is_absolute():
        rpath = base_dir / rpath
    if not cfg.get("recipe") or not rpath.is_file():
        raise ConfigError(f"recipe: train recipe {str(rpath)!r} not found (e.g. recipe: mlore_lite0.yaml)")
    recipe = _read_yaml(rpath, "train recipe")
    model = recipe.pop("model", None)
    if isinstance(model, str):
        mpath = Path(model) if Path(model).is_absolute() else rpath.resolve().parent / model
        if not mpath.is_file():
            raise ConfigError(f"recipe {rpath}: model config {str(mpath)!r} not found")
        model = _read_yaml(mpath, "model config")
        cfg["_model_path"] = str(mpath)
    if not isinstance(model, dict):
        raise ConfigError(f"recipe {rpath}: 'model' must be a model config path or mapping")
    cfg["_recipe_path"] = str(rpath)
    cfg["_recipe_steps"] = recipe.get("steps")
    cfg["_recipe_model"] = model
    shared = merge_config(recipe, cfg["train"])  # the shared small budget over the recipe

    if steps is not None:
        if steps <= 0:
            raise ConfigError(f"--steps must be positive, got {steps}")
        shared["steps"] = int(steps)
        warm = (shared.get("schedule") or {}).get("warmup_steps", 0)
        if warm >= steps:  # keep a decay phase in very short runs (tests, smoke runs)
            shared.setdefault("schedule", {})["warmup_steps"] = steps // 4
        # a periodic checkpoint beyond the last step would never be written; cap it so --resume
        # of a short run still has one
        shared["checkpoint_every"] = max(1, min(int(shared.get("checkpoint_every", steps)), int(steps)))
    cfg["_shared_train"] = shared
    if eval_frames is not None:
        if eval_frames <= 0:
            raise ConfigError(f"--eval-frames must be positive, got {eval_frames}")
        cfg["eval"]["frames"] = int(eval_frames)
    for key in ("seed", "frames", "height", "width"):
        if key not in cfg["eval"]:
            raise ConfigError(f"sim2real ablation config: eval.{key} is required")

    if arms:
        bad = sorted(set(arms) - set(cfg["arms"]))
        if bad:
            raise ConfigError(f"unknown arm(s) {bad}; known: {list(cfg['arms'])}")
        keep = set(arms) | {ref}
    else:
        keep = set(cfg["arms"])
    # the reference first (the row every delta is read against), then the recipe's order
    cfg["_selected"] = [ref] + [a for a in cfg["arms"] if a in keep and a != ref]

    if realdata is not None:
        cfg["realdata"]["root"] = realdata
    cfg["realdata"]["enabled"] = not no_realdata
    return cfg


def arm_configs(cfg: dict[str, Any], arm: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config, train recipe without ``model``) of one arm: recipe <- shared budget <- arm."""
    entry = cfg["arms"][arm]
    model = merge_config(cfg["_recipe_model"], cfg["model"])
    model = merge_config(model, entry.get("model") or {})
    model["name"] = f"sim2real_{arm}"
    train = merge_config(cfg["_shared_train"], entry.get("train") or {})
    if entry.get("data"):
        train["data"] = merge_config(train.get("data") or {}, entry["data"])
    return model, train


def plan_arms(cfg: dict[str, Any]) -> list[RunSpec]:
    """One ``RunSpec`` per selected arm (the reference first, then the recipe's order); validates
    every model config and the data specs before anything is trained."""
    from mtl_perception.model import load_config
    from mtl_perception.train import load_train_config

    specs: list[RunSpec] = []
    roots: dict[str, tuple[str, dict[str, Any]]] = {}
    gen_seeds: set[int] = set()
    for arm in cfg["_selected"]:
        model, train = arm_configs(cfg, arm)
        try:
            load_config(copy.deepcopy(model))  # fail now, not after the arms before it have trained
        except ConfigError as exc:
            raise ConfigError(f"arms.{arm}: {exc}") from exc
        bb = model.get("backbone") or {}
        if not bb.get("pretrained") and not bb.get("pretrained_path") and int(bb.get("freeze_stages") or 0) > 0:
            # frozen random layers would stay random: the arm would measure a crippled backbone
            raise ConfigError(
                f"arms.{arm}: backbone.freeze_stages {bb['freeze_stages']} without pretrained weights freezes "
                "random layers; set backbone.freeze_stages: 0 in this arm"
            )
        tcfg = load_train_config({**train, "model": model})
        spec_data = tcfg["data"]["train"]
        gen = spec_data.get("generate")
        if spec_data.get("type") == "synthetic" and gen:
            gen_seeds.add(int(gen.get("seed", 0)))
            root = str(spec_data["root"])
            norm = {"randomization": "full", **gen}
            if root in roots and roots[root][1] != norm:
                raise ConfigError(
                    f"arms {roots[root][0]!r} and {arm!r} render different training sets into the same root "
                    f"{root!r}; give arms.{arm}.data.train its own root"
                )
            roots.setdefault(root, (arm, norm))
        specs.append(RunSpec(arm, "arm", model["decoder"]["type"], list(model["tasks"]), tcfg))
    if int(cfg["eval"]["seed"]) in gen_seeds:
        raise ConfigError(f"eval.seed {cfg['eval']['seed']} is a training set's seed; pick an unused one")
    return specs


def ensure_train_sets(specs: list[RunSpec], progress: bool = False, log: Callable[[str], None] = print) -> None:
    """Render every arm's synthetic training set up front (atomically, validated when cached):
    the trainer's own on-first-use render writes in place, so an interrupted one would block
    the folder for the next invocation."""
    done: set[str] = set()
    for spec in specs:
        data = spec.train_cfg["data"]["train"]
        if data.get("type") != "synthetic" or not data.get("generate") or data["root"] in done:
            continue
        done.add(data["root"])
        root = Path(data["root"])  # relative roots are relative to the working directory, as in training
        if not (root / "dataset.json").is_file():
            log(f"[sim2real] render training set {root} ({data['generate'].get('frames')} frames)")
        render_synthetic_set(root, data["generate"], progress=progress, desc=f"render {root.name}")


# ---------------------------------------------------------------------------------- evaluation
def realdata_refs(cfg: dict[str, Any]) -> list[Any]:
    """The real frames to score (RealDataError, a ValueError, when the folder or a set is missing)."""
    from mtl_perception.data.realdata import list_frames

    rd = cfg["realdata"]
    sets = rd.get("sets")
    if isinstance(sets, str):
        sets = [s.strip() for s in sets.split(",") if s.strip()]
    refs = list_frames(Path(rd["root"]), sets or None)
    limit = rd.get("limit")
    return refs[: int(limit)] if limit else refs


def _slim_realdata(res: dict[str, Any]) -> dict[str, Any]:
    """A scorer's result without the confusion matrices (the JSON stays readable)."""
    out = copy.deepcopy(res)
    for key in ("cityscapes", "camvid"):
        if key in out:
            out[key].pop("confusion", None)
    return out


def evaluate_realdata(rows: list[dict[str, Any]], refs: list[Any], cfg: dict[str, Any]) -> None:
    """Score every arm on the real frames (each frame read once, given to every arm's
    ``FramePipeline``); fills ``row['realdata']`` and the real-frame headline metrics."""
    from mtl_perception.data.realdata import load_frame
    from mtl_perception.evaluate.realdata import run_realdata

    engines = [(row["name"], make_engine(Path(row["checkpoint"]), cfg["engine"])) for row in rows]
    runs = run_realdata(engines, (load_frame(r) for r in refs), float(cfg["realdata"]["max_depth"]))
    for row, run in zip(rows, runs):
        res = run.scorer.compute()
        row["realdata"] = {**_slim_realdata(res), "seconds": run.seconds}
        cs, cv, dp = res.get("cityscapes") or {}, res.get("camvid") or {}, res.get("depth") or {}
        row["metrics"].update(
            cs_miou=cs.get("miou"),
            cs_pixel_acc=cs.get("pixel_acc"),
            camvid_miou=cv.get("miou_8"),
            depth_abs_rel=dp.get("abs_rel"),
            depth_delta1=dp.get("delta1"),
            depth_abs_rel_med=dp.get("abs_rel_median_scaled"),
            depth_delta1_med=dp.get("delta1_median_scaled"),
        )


def _finite(v: Any) -> bool:
    # numbers.Real also covers numpy scalars, which the meters may hand back
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def deltas(rows: list[dict[str, Any]], reference: str) -> None:
    """``row['delta']``: arm minus reference per headline metric (None where either is missing);
    ``row['ingredient_helps']``: per metric, whether the reference (ingredient on) is better."""
    ref = next((r for r in rows if r["name"] == reference), None)
    for row in rows:
        row["delta"], row["ingredient_helps"] = {}, {}
        if ref is None or row is ref:
            continue
        for key, (_label, higher, _s, _f) in METRICS.items():
            a, b = row["metrics"].get(key), ref["metrics"].get(key)
            if not (_finite(a) and _finite(b)):
                row["delta"][key] = row["ingredient_helps"][key] = None
                continue
            row["delta"][key] = a - b
            row["ingredient_helps"][key] = (b > a) if higher else (b < a)


# ---------------------------------------------------------------------------------- driver
def run_sim2real(
    cfg: dict[str, Any],
    out: str | Path,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    command: str = "",
) -> dict[str, Any]:
    """Train (or skip) every selected arm, score each on the real and held-out synthetic frames,
    and assemble the results dict (see ``render_markdown``)."""
    import torch

    from mtl_perception.data.synthetic_io import SyntheticDataset

    t_start = time.perf_counter()
    threads = int(cfg["engine"].get("threads", 2))
    torch.set_num_threads(threads)  # one setting for training and evaluation
    out = Path(out)
    specs = plan_arms(cfg)
    if not specs:
        raise ConfigError("no arms selected")
    # list the real frames before training: a wrong folder must not surface after an hour of training
    refs = realdata_refs(cfg) if cfg["realdata"]["enabled"] else []
    ensure_train_sets(specs, progress=progress, log=log)
    n = len(specs)
    rows: list[dict[str, Any]] = []
    for i, spec in enumerate(specs, 1):
        log(f"[sim2real {i}/{n}] train {spec.name}: {cfg['arms'][spec.name].get('about', '')}".rstrip(": "))
        rows.append(
            {
                "name": spec.name,
                "about": cfg["arms"][spec.name].get("about", ""),
                "fingerprint": spec.fingerprint,
                "checkpoint": str(out / spec.name / "model.safetensors"),
                "train": train_run(spec, out / spec.name, resume=resume, force=force, progress=progress),
                "resolved": _resolved(spec),
                "metrics": {},
            }
        )
        log(f"[sim2real {i}/{n}] {spec.name}: {rows[-1]['train']['status']} ({rows[-1]['train']['seconds']:.0f} s)")
    log("[sim2real] render / open the held-out synthetic set")
    eval_root = ensure_eval_set(cfg, progress=progress)
    dataset = SyntheticDataset(str(eval_root))
    shim = {"eval": cfg["eval"], "latency": cfg["engine"]}  # evaluate_run's keys
    for i, row in enumerate(rows, 1):
        log(f"[sim2real eval {i}/{n}] {row['name']} on {len(dataset)} held-out synthetic frames")
        syn = evaluate_run(Path(row["checkpoint"]), dataset, shim)
        row["synthetic"] = syn
        row["metrics"].update(syn_miou=syn.get("miou"), syn_abs_rel=syn.get("abs_rel"))
    if refs:
        log(f"[sim2real] score {n} arm(s) on {len(refs)} real frames from {cfg['realdata']['root']}")
        evaluate_realdata(rows, refs, cfg)
    else:
        for row in rows:
            row["realdata"] = None
    # Keep the table's column order whatever was or was not measured.
    for row in rows:
        row["metrics"] = {k: row["metrics"].get(k) for k in METRICS}
    deltas(rows, cfg["reference"])
    tr = specs[0].train_cfg
    per_set: dict[str, int] = {}
    for r in refs:
        per_set[r.set] = per_set.get(r.set, 0) + 1
    results = {
        "meta": {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command,
            "recipe": cfg["_path"],
            "derived_from": cfg["_recipe_path"],
            "reference": cfg["reference"],
            "machine": machine_info(threads),
            "budget": {**_budget(tr), "recipe_steps": cfg.get("_recipe_steps")},
            "eval": {
                "frames": len(dataset),
                "seed": int(cfg["eval"]["seed"]),
                "size": [int(cfg["eval"]["height"]), int(cfg["eval"]["width"])],
                "randomization": str(cfg["eval"].get("randomization", "full")),
                "max_depth": float(cfg["eval"].get("max_depth", 80.0)),
                "root": str(eval_root),
            },
            "realdata": {
                "enabled": bool(refs),
                "root": str(cfg["realdata"]["root"]),
                "frames": len(refs),
                "frames_per_set": per_set,
                "max_depth": float(cfg["realdata"]["max_depth"]),
            },
            "engine": dict(cfg["engine"]),
            "metrics": {k: {"label": v[0], "higher_is_better": v[1]} for k, v in METRICS.items()},
            "wall_s": time.perf_counter() - t_start,
            "train_s": sum(r["train"]["seconds"] for r in rows),
        },
        "runs": rows,
    }
    results["reading"] = reading(results)
    return results


def _resolved(spec: RunSpec) -> dict[str, Any]:
    """The switches an arm is about, as its resolved configs have them (what the table claims)."""
    m, d = spec.train_cfg["model"], spec.train_cfg["data"]
    aug, gen = d.get("augment") or {}, d["train"].get("generate") or {}
    return {
        "backbone_pretrained": m["backbone"].get("pretrained"),
        "freeze_bn": bool(m["backbone"].get("freeze_bn", False)),
        "freeze_stages": int(m["backbone"].get("freeze_stages") or 0),
        "backbone_lr_mult": spec.train_cfg["optim"].get("backbone_lr_mult", 1.0),
        "resize": (m.get("camera") or {}).get("resize", "stretch"),
        "canonical_focal": (m.get("camera") or {}).get("canonical_focal"),
        "letterbox_prob": float(aug.get("letterbox_prob", 0.0)),
        "sensor": float(aug.get("sensor", 0.0)),
        "randomization": gen.get("randomization", "full") if gen else None,
        "train_root": d["train"].get("root"),
    }


def _budget(tr: dict[str, Any]) -> dict[str, Any]:
    m, d = tr["model"], tr["data"]
    aug, gen = d.get("augment") or {}, d["train"].get("generate") or {}
    return {
        "steps": tr["steps"],
        "batch_size": tr["batch_size"],
        "input_size": list(m["input_size"]),
        "crop_size": list(aug.get("crop_size") or m["input_size"]),
        "backbone": m["backbone"]["name"],
        "decoder": m["decoder"]["type"],
        "decoder_channels": m["decoder"].get("channels"),
        "train_frames": gen.get("frames"),
        "train_size": [gen.get("height"), gen.get("width")],
        "train_seed": gen.get("seed"),
        "seed": tr["seed"],
        "optim": tr["optim"],
        "schedule": tr["schedule"],
    }


# ---------------------------------------------------------------------------------- report
def _cell(v: Any, key: str, delta: bool = False) -> str:
    if not _finite(v):
        return "-"
    _label, _higher, scale, fmt = METRICS[key]
    text = f"{v * scale:{'+' if delta else ''}{fmt}}"
    # a delta that rounds to zero is shown unsigned: "-0.0" would read as a (tiny) loss
    return text.lstrip("+-") if delta and float(text) == 0 else text


def reading(results: dict[str, Any]) -> str:
    """Per arm: on how many measured metrics the reference (ingredient on) beats it, and the caveat."""
    ref = results["meta"]["reference"]
    b, rd = results["meta"]["budget"], results["meta"]["realdata"]
    parts = []
    for r in results["runs"]:
        if r["name"] == ref:
            continue
        helps = {k: v for k, v in r["ingredient_helps"].items() if v is not None}
        real = {k: v for k, v in helps.items() if k in REAL_METRICS}
        if not helps:
            parts.append(f"`{r['name']}`: no metric measured on both it and `{ref}`")
            continue
        txt = f"`{ref}` beats `{r['name']}` on {sum(helps.values())} of {len(helps)} metrics"
        if real:
            txt += f" ({sum(real.values())} of {len(real)} on the real frames)"
        parts.append(txt)
    frames = ", ".join(f"{k} {v}" for k, v in rd["frames_per_set"].items()) if rd["enabled"] else ""
    caveat = (
        f"One training seed, one rendered training set and {b['steps']} steps at batch {b['batch_size']}: "
        "gaps of a few points are inside run-to-run noise, and the real set is tiny"
        + (f" ({rd['frames']} frames: {frames})" if frames else "")
        + ", so a single frame moves the means. Only large gaps that agree across metrics say something; "
        "repeat with other `train.seed` values before acting on a small one."
    )
    return ("; ".join(parts) + ". " if parts else "") + caveat


def render_markdown(results: dict[str, Any], image: str | None = None) -> str:
    meta, runs = results["meta"], results["runs"]
    b, ev, rd, mach, eng = meta["budget"], meta["eval"], meta["realdata"], meta["machine"], meta["engine"]
    ref = meta["reference"]
    cols = list(METRICS)
    head = "| arm | what it changes | " + " | ".join(METRICS[k][0] for k in cols) + " |"
    sep = "|---|---|" + "---|" * len(cols)
    arrows = " | ".join(("higher" if METRICS[k][1] else "lower") + " is better" for k in cols)
    lines = [
        "# Sim-to-real ablation: what each ingredient buys on the real frames",
        "",
        "Generated by `mtl-perception ablation`; do not edit by hand. Regenerate:",
        "",
        "```bash",
        meta["command"]
        or "mtl-perception ablation --config config/train/sim2real_ablation.yaml --out runs/sim2real "
        "--docs docs/sim2real_ablation.md",
        "```",
        "",
        f"- **Date**: {meta['date']}; recipe `{meta['recipe']}`, derived from `{meta['derived_from']}`. Training "
        f"time of the {len(runs)} arms (recorded when each was trained, next to other jobs): "
        f"{meta['train_s'] / 60:.1f} min; wall time of the invocation that wrote this file: "
        f"{meta['wall_s'] / 60:.1f} min.",
        f"- **Machine**: {mach['platform']}, {mach['processor']}, {mach['cpu_count']} CPU cores, no GPU, "
        f"torch {mach['torch']}, {mach['threads']} threads.",
        f"- **Budget (identical for every arm)**: {b['steps']} steps x batch {b['batch_size']}, {b['crop_size'][0]}x"
        f"{b['crop_size'][1]} training crops, network input {b['input_size'][0]}x{b['input_size'][1]}, "
        f"`{b['backbone']}` + `{b['decoder']}` (C={b['decoder_channels']}), AdamW lr {b['optim']['lr']}, "
        f"{b['schedule']['type']} schedule with {b['schedule'].get('warmup_steps', 0)} warm-up steps, "
        f"seed {b['seed']}; "
        f"{b['train_frames']} rendered training frames at {b['train_size'][0]}x{b['train_size'][1]} "
        f"(seed {b['train_seed']}). A small-budget comparison on a 2-core CPU"
        + (f", not the recipe's {b['recipe_steps']} steps." if b.get("recipe_steps") else "."),
        "- **Real frames**: "
        + (
            f"{rd['frames']} frames of `{rd['root']}` ("
            + ", ".join(f"{k} {v}" for k, v in rd["frames_per_set"].items())
            + "), scored as `mtl-perception eval --realdata` does (`evaluate/realdata.py`): Cityscapes mIoU "
            "(classes present in the GT) and pixel accuracy from one confusion pooled over the labelled Cityscapes "
            "frames; CamVid mIoU over the 8 one-to-one classes; depth AbsRel and delta<1.25 per frame on GT pixels "
            f"in (0, {rd['max_depth']:g} m), mean over frames, raw metric and after per-frame median scaling."
            if rd["enabled"]
            else "not scored in this invocation (`--no-realdata`); those columns are empty."
        ),
        f"- **Synthetic**: {ev['frames']} held-out frames (seed {ev['seed']}, used by no training set, "
        f"{ev['size'][0]}x{ev['size'][1]}, `{ev['randomization']}` randomization), through the path of "
        f"`mtl-perception eval`; mIoU over the classes present; depth capped at {ev['max_depth']:g} m.",
        f"- **Inference**: `InferenceEngine` ({eng.get('backend', 'torch')} backend, {eng.get('precision', 'fp32')}, "
        f"CPU) + `FramePipeline.process(rgb, K)`, the ROS node's path: each arm's own resize (letterbox or stretch) "
        "and, for canonical-depth arms, metres through the frame's intrinsics (the model's default field of view "
        "when a frame has none).",
        "- **Median scaling** removes any global depth scale error, so the canonical-camera ingredient shows "
        "mainly in the raw columns.",
        "",
        "## Metrics per arm",
        "",
        head,
        sep,
        "| | | " + arrows + " |",
    ]
    for r in runs:
        tag = " (reference)" if r["name"] == ref else ""
        cells = " | ".join(_cell(r["metrics"].get(k), k) for k in cols)
        lines.append(f"| `{r['name']}`{tag} | {r.get('about', '')} | {cells} |")
    lines += [
        "",
        f"## Delta of each arm against `{ref}`",
        "",
        f"Arm minus `{ref}`: percentage points for the % columns. A negative delta in a higher-is-better column "
        f"(or a positive one in a lower-is-better column) means the arm is worse, i.e. what `{ref}`'s ingredient buys.",
        "",
        head,
        sep,
        "| | | " + arrows + " |",
    ]
    for r in runs:
        if r["name"] == ref:
            continue
        cells = " | ".join(_cell(r["delta"].get(k), k, delta=True) for k in cols)
        lines.append(f"| `{r['name']}` | {r.get('about', '')} | {cells} |")
    lines += ["", f"**Reading.** {results['reading']}", ""]
    if image:
        lines += [f"![sim2real ablation]({image})", ""]
    json_name = meta.get("json_name") or "sim2real_ablation.json"
    lines += [
        "Resolved switches per arm (what each checkpoint was trained with) below; per-set depth, per-class IoU "
        f"and the synthetic pixel accuracy / RMSE / delta<1.25 are in `{json_name}`.",
        "",
        "| arm | backbone | BN | frozen stages | backbone lr x | resize | canonical focal | letterbox p | sensor "
        "| randomization |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = r["resolved"]
        bn = "frozen" if s["freeze_bn"] else "trained"
        focal = f"{s['canonical_focal']:g} px" if s["canonical_focal"] else "none (metric)"
        lines.append(
            f"| `{r['name']}` | {s['backbone_pretrained'] or 'scratch'} | {bn} | {s['freeze_stages']} | "
            f"{s['backbone_lr_mult']:g} | "
            f"{s['resize']} | {focal} | {s['letterbox_prob']:g} | {s['sensor']:g} | {s['randomization']} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot_results(results: dict[str, Any], path: Path) -> Path:
    """One small panel per headline metric, one bar per arm, the reference arm as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, ref = results["runs"], results["meta"]["reference"]
    keys = [k for k in METRICS if any(_finite(r["metrics"].get(k)) for r in runs)]
    ncol = 3
    nrow = max(1, math.ceil(len(keys) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(12, 2.8 * nrow), squeeze=False)
    names = [r["name"] for r in runs]
    for ax, key in zip(axes.flat, keys):
        label, higher, scale, _fmt = METRICS[key]
        vals = [r["metrics"].get(key) for r in runs]
        colors = ["#c0392b" if n == ref else "#3a7ebf" for n in names]
        ax.bar(names, [v * scale if _finite(v) else 0 for v in vals], color=colors)
        ref_v = next((v for n, v in zip(names, vals) if n == ref), None)
        if _finite(ref_v):
            ax.axhline(ref_v * scale, color="#c0392b", ls="--", lw=1)
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize=8)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path


def write_docs(results: dict[str, Any], md_path: str | Path, plot: bool = True) -> dict[str, Path]:
    """Write ``<md>``, ``<md stem>.json`` next to it and optionally ``images/<md stem>.png``."""
    results["meta"]["json_name"] = Path(md_path).with_suffix(".json").name
    return ablation.write_docs(
        results, md_path, plot, plot_fn=plot_results, render_fn=render_markdown, json_default=_json_default
    )


def _json_default(o: Any) -> Any:
    """numpy scalars/arrays and paths in the results (NaN stays NaN, as the other reports write it)."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return float(o)
