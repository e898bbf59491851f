"""Checkpoints: safetensors with the model config embedded. Never pickle.

Metadata keys: ``format`` (``mtl_perception.checkpoint/1``), ``config`` (canonical JSON),
``config_sha256``, ``dtype`` (storage dtype of floating parameters) and any caller extras
(e.g. training step, dataset). Loading rebuilds the model from the embedded config; if the
caller also passes a config, it must match or the load fails naming the differing keys.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl_perception.model.config import config_to_json, diff_configs, load_config
from mtl_perception.model.errors import CheckpointError

FORMAT = "mtl_perception.checkpoint/1"


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    extra_metadata: dict[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model`` (training form) and its config. ``dtype=torch.float16`` halves the file;
    BatchNorm statistics and integer buffers stay in their own dtype."""
    from safetensors.torch import save_file

    if getattr(model, "deployed", False):
        raise CheckpointError("save the training-form model, not the output of deploy()")
    cfg = model.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    params = {name for name, _ in model.named_parameters()}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().clone()
        if name in params and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t
    cfg_json = config_to_json(cfg)
    meta = {
        "format": FORMAT,
        "config": cfg_json,
        "config_sha256": hashlib.sha256(config_to_json(cfg, canonical=True).encode()).hexdigest(),
        "dtype": str(dtype).removeprefix("torch."),
        **{k: str(v) for k, v in (extra_metadata or {}).items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: a killed save never leaves a truncated checkpoint
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} not found; train one with `mtl-perception train` "
            "or pass an existing .safetensors file"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors checkpoint: {exc}") from exc
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{str(path)!r} is not an mtl_perception checkpoint (no embedded config)")
    return meta


def load_checkpoint(
    path: str | Path,
    config: str | Path | dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild the model from the embedded config and load the weights (eval mode)."""
    from safetensors.torch import load_file

    from mtl_perception.model import build_model

    meta = read_metadata(path)
    embedded = json.loads(meta["config"])
    if config is not None:
        wanted = load_config(config)
        diffs = diff_configs(embedded, wanted)
        if diffs:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was trained with a different model config; differing keys: "
                f"{', '.join(diffs[:8])}. Pass the matching config or omit it to use the embedded one"
            )
    model = build_model(embedded, load_pretrained=False)  # the checkpoint holds every weight
    state = load_file(str(path), device=str(map_location))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, v in state.items():
        if v.is_floating_point():
            state[k] = v.to(own[k].dtype)
    model.load_state_dict(state)
    model.checkpoint_metadata = meta
    return model.to(map_location).eval()
