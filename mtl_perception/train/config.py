"""Training configuration (``config/train/*.yaml``): defaults, validation, path resolution."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from mtl_perception.model.errors import ConfigError
from mtl_perception.train.class_balance import validate_class_balance
from mtl_perception.train.depth_gradient import validate_depth_gradient_loss
from mtl_perception.train.feature_anchor import validate_feature_anchor
from mtl_perception.train.rare_class import validate_rare_class_sampling

DEFAULTS: dict[str, Any] = {
    "model": "../models/mlore.yaml",  # path relative to the train config, or an inline dict
    "data": {
        "train": {"type": "synthetic", "root": ".cache/synthetic/train"},
        "val": None,
        "num_workers": 2,
        "augment": {
            "scale_range": [0.75, 1.5],
            "depth_mode": "scale_intrinsics",
            "hflip": 0.5,
            "photometric": True,
        },
    },
    "steps": 2000,
    "batch_size": 8,
    "optim": {"lr": 2e-4, "backbone_lr_mult": 1.0, "weight_decay": 0.05, "betas": [0.9, 0.999]},
    "schedule": {"type": "poly", "power": 0.9, "warmup_steps": 100, "warmup_ratio": 0.01, "min_lr": 0.0},
    "grad_clip": 10.0,
    "amp": "auto",  # auto: bf16 autocast on CUDA when supported, else fp16 + GradScaler; never on CPU
    "sync_bn": False,
    "find_unused_parameters": False,
    "checkpoint_every": 500,
    "keep_checkpoints": 3,
    "eval_every": 0,  # 0: evaluate only at the end (when a val set is given)
    "log_every": 10,
    "seed": 0,
    # Seed of the initial weights that init_from does not provide (None: seed). Runs that differ in seed
    # but share init_seed start from identical weights, which a soup of them needs (docs/sim2real.md s. 57).
    "init_seed": None,
    "save_dtype": "float32",
    # Warm start: copy every tensor whose name and shape match from this checkpoint (e.g. the
    # shipped model's trained backbone into another decoder). Ignored when resuming.
    "init_from": None,
    # Name prefixes init_from does not copy, e.g. [backbone.]: a trained decoder and heads on a fresh
    # ImageNet backbone of another size (docs/sim2real.md section 27).
    "init_exclude": [],
    # Merged into the model config (e.g. {uncertainty: {depth: true}} adds the depth uncertainty head).
    "model_overrides": {},
    # {train_only: [module prefixes]}: train only those modules; the rest is frozen in eval mode
    # (config/train/uncertainty_head.yaml trains the uncertainty head of a shipped model alone).
    "freeze": None,
    # Class-balanced semantic loss (mtl_perception/train/class_balance.py): {power: 0.5, max_weight: 10}
    # weights each class by its inverse (square-root) pixel frequency in the training set; None: plain mean.
    "class_balance": None,
    # ImageNet feature anchor (mtl_perception/train/feature_anchor.py): {weight: 0.1, levels: [2, 3]} adds
    # the relative distance between the backbone's features and a frozen ImageNet copy's; None: off.
    "feature_anchor": None,
    # Log-depth gradient matching (mtl_perception/train/depth_gradient.py): {weight: 0.5, scales: 4} adds a
    # shape term (the gradient of the log-depth residual) to the depth loss; None: off.
    "depth_gradient_loss": None,
    # Rare-class sampling (mtl_perception/train/rare_class.py): {temperature: 0.01, fraction: 0.5} draws a
    # fraction of the frames class-first (rare classes favoured) with crops that show the class; None: off.
    "rare_class_sampling": None,
}

SCHEDULES = ("poly", "cosine", "constant")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. steps=100), got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.split("."), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({problem}); quote it or fix it") from exc


def load_train_config(path: str | Path | dict[str, Any], overrides: list[str] | None = None) -> dict[str, Any]:
    base_dir = Path.cwd()
    if isinstance(path, (str, Path)):
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"train config {str(p)!r} not found; see config/train/ for examples")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            binary = isinstance(exc, UnicodeDecodeError)
            problem = "is not UTF-8 text (a binary file?)" if binary else "is not valid YAML"
            detail = " ".join(str(exc).split())
            raise ConfigError(
                f"train config {str(p)!r} {problem}: {detail}; pass a YAML recipe such as config/train/mlore_lite0.yaml"
            ) from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"train config {str(p)!r} must be a YAML mapping of keys, got {type(raw).__name__}")
        base_dir = p.resolve().parent
    else:
        raw = copy.deepcopy(path)
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown train config key(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    cfg = _merge(DEFAULTS, raw)
    for item in overrides or []:
        keys, value = parse_override(item)
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ConfigError(f"--set {item!r}: {k!r} is not a section of the train config")
            node = node[k]
        if keys[-1] not in node and keys[0] != "data":
            raise ConfigError(f"--set {item!r}: unknown key {'.'.join(keys)!r}")
        node[keys[-1]] = value
    if isinstance(cfg["model"], str):
        model_path = Path(cfg["model"])
        if not model_path.is_absolute():
            model_path = (base_dir / model_path).resolve()
        cfg["model"] = str(model_path)
        if model_path.suffix == ".safetensors":
            cfg["model"] = _checkpoint_config(model_path)  # that checkpoint's exact architecture
    if cfg["model_overrides"]:
        from mtl_perception.model.config import load_config, merge_config

        cfg["model"] = load_config(merge_config(load_config(cfg["model"]), cfg["model_overrides"]))
    if cfg["init_from"] is not None:
        init_path = Path(str(cfg["init_from"]))
        if not init_path.is_absolute() and not init_path.exists():
            init_path = (base_dir / init_path).resolve()  # relative to the recipe, like `model`
        cfg["init_from"] = str(init_path)
    cfg["_base_dir"] = str(base_dir)
    _validate(cfg)
    return cfg


def _checkpoint_config(path: Path) -> dict[str, Any]:
    """The model config embedded in checkpoint ``path`` (``model: X.safetensors`` in a recipe)."""
    import json

    from mtl_perception.model.checkpoint import read_metadata
    from mtl_perception.model.errors import CheckpointError

    try:
        return json.loads(read_metadata(path)["config"])
    except CheckpointError as exc:
        raise ConfigError(f"model: {exc}") from exc


def _validate_crop_size(cfg: dict[str, Any]) -> None:
    """A training crop the backbone cannot take (not a multiple of its stride) fails here, not at the
    first forward pass as a tensor-size mismatch deep in the decoder."""
    crop = (cfg["data"].get("augment") or {}).get("crop_size")
    if crop is None:
        return
    from mtl_perception.model.config import input_multiple, load_config

    model_cfg = load_config(cfg["model"])
    k = input_multiple(model_cfg)
    ok = isinstance(crop, (list, tuple)) and len(crop) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 and not v % k for v in crop)
    if not ok:
        nums = isinstance(crop, (list, tuple)) and all(isinstance(v, (int, float)) for v in crop)
        hint = [max(k, round(v / k) * k) for v in crop] if nums else [8 * k, 12 * k]
        name = model_cfg.get("name", "this model")
        raise ConfigError(
            f"data.augment.crop_size must be [H, W], positive multiples of {k} ({name}'s backbone stride), "
            f"got {crop!r} (e.g. {hint})"
        )


def _validate(cfg: dict[str, Any]) -> None:
    for key in ("data", "optim", "schedule"):
        if not isinstance(cfg[key], dict):
            raise ConfigError(f"{key} must be a mapping (see config/train/ for examples), got {cfg[key]!r}")
    for key in ("steps", "batch_size", "checkpoint_every", "log_every"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {cfg[key]!r}")
    lr = cfg["optim"].get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"optim.lr must be a number > 0, got {lr!r}")
    if cfg["schedule"]["type"] not in SCHEDULES:
        raise ConfigError(f"schedule.type must be one of {SCHEDULES}, got {cfg['schedule']['type']!r}")
    if cfg["amp"] not in ("auto", "off", "fp16", "bf16"):
        raise ConfigError(f"amp must be auto, off, fp16 or bf16, got {cfg['amp']!r}")
    if cfg["save_dtype"] not in ("float32", "float16"):
        raise ConfigError("save_dtype must be float32 or float16")
    for key, value in (("seed", cfg["seed"]), ("init_seed", cfg["init_seed"])):
        if key == "init_seed" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
    exclude = cfg["init_exclude"]
    if not isinstance(exclude, list) or not all(isinstance(p, str) and p for p in exclude):
        raise ConfigError(f"init_exclude must be a list of tensor-name prefixes (e.g. [backbone.]), got {exclude!r}")
    rc = (cfg["data"].get("augment") or {}).get("random_conv", 0.0)
    if isinstance(rc, bool) or not isinstance(rc, (int, float)) or not 0.0 <= rc <= 1.0:
        raise ConfigError(f"data.augment.random_conv must be a probability in [0, 1] (0 = off), got {rc!r}")
    polarity = (cfg["data"].get("augment") or {}).get("random_conv_polarity", "any")
    if polarity not in ("any", "keep"):
        raise ConfigError(
            f"data.augment.random_conv_polarity must be 'any' (kernels may invert) or 'keep', got {polarity!r}"
        )
    if exclude and not cfg["init_from"]:
        raise ConfigError("init_exclude applies to init_from: give init_from (a .safetensors checkpoint) or drop it")
    freeze = cfg["freeze"]
    if freeze is not None:
        only = freeze.get("train_only") if isinstance(freeze, dict) else None
        names_ok = isinstance(only, list) and only and all(isinstance(n, str) and n for n in only)
        if set(freeze or {}) - {"train_only"} or not names_ok:
            raise ConfigError(
                "freeze must be {train_only: [module or glob, ...]} (e.g. [uncertainty] or ['*.depth']), "
                f"got {freeze!r}"
            )
    cfg["class_balance"] = validate_class_balance(cfg["class_balance"])
    cfg["feature_anchor"] = validate_feature_anchor(cfg["feature_anchor"])
    cfg["depth_gradient_loss"] = validate_depth_gradient_loss(cfg["depth_gradient_loss"])
    cfg["rare_class_sampling"] = validate_rare_class_sampling(cfg["rare_class_sampling"])
    if not isinstance(cfg["model_overrides"], dict):
        raise ConfigError(f"model_overrides must be a mapping, got {cfg['model_overrides']!r}")
    _validate_crop_size(cfg)
    if not isinstance(cfg["data"].get("train"), dict) or "type" not in cfg["data"]["train"]:
        raise ConfigError("data.train must be a dataset spec with a 'type' (e.g. {type: synthetic, root: DIR})")
