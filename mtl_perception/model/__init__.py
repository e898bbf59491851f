"""Model library (ROS-free): ViT and CNN backbones, registered decoder variants, task specs.

Public API::

    model = build_model("config/models/mlore.yaml")     # or a dict
    out = model(x)            # {"semseg": [B,K,H,W] logits, "depth": [B,1,H,W] metres}
    fast = deploy(model)      # re-parameterized inference form
    save_checkpoint(model, "m.safetensors"); model = load_checkpoint("m.safetensors")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtl_perception.model import decoders as _decoders  # noqa: F401  (registers variants)
from mtl_perception.model.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from mtl_perception.model.config import load_config
from mtl_perception.model.deploy import deploy
from mtl_perception.model.errors import CheckpointError, ConfigError
from mtl_perception.model.multitask import MultiTaskModel
from mtl_perception.model.registry import DECODERS, Decoder, register_decoder, resolve_decoder_config


def build_model(config: str | Path | dict[str, Any], load_pretrained: bool = True) -> MultiTaskModel:
    """Build a model from a YAML path or dict; the stored config has every default filled.
    ``load_pretrained=False`` skips backbone weight files (a checkpoint brings its own weights)."""
    cfg = load_config(config)
    cfg["decoder"] = resolve_decoder_config(cfg["decoder"])
    return MultiTaskModel(cfg, load_pretrained=load_pretrained)


def list_decoders() -> list[str]:
    return sorted(DECODERS)


__all__ = [
    "DECODERS",
    "CheckpointError",
    "ConfigError",
    "Decoder",
    "MultiTaskModel",
    "build_model",
    "deploy",
    "list_decoders",
    "load_checkpoint",
    "load_config",
    "read_metadata",
    "register_decoder",
    "save_checkpoint",
]
