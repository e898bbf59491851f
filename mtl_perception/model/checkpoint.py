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

from mtl_perception.atomic_io import atomic_path, atomic_write_bytes
from mtl_perception.model.config import config_to_json, diff_configs, load_config
from mtl_perception.model.errors import CheckpointError

FORMAT = "mtl_perception.checkpoint/1"


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a safetensors file (parent folders created); atomic: a killed write leaves the old file
    or none, never a truncated checkpoint."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    extra_metadata: dict[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model`` (training form) and its config. ``dtype=torch.float16`` halves the file;
    BatchNorm statistics and integer buffers stay in their own dtype."""
    if getattr(model, "deployed", False):
        raise CheckpointError("save the training-form model, not the output of deploy()")
    cfg = model.config
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
    return write_tensors(path, tensors, meta)


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
        raise CheckpointError(
            f"{str(path)!r} is not a readable safetensors checkpoint ({' '.join(str(exc).split())}); "
            "pass a .safetensors file written by `mtl-perception train`"
        ) from exc
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(
            f"{str(path)!r} is not an mtl_perception checkpoint (no embedded config); "
            "pass a .safetensors file written by `mtl-perception train`"
        )
    return meta


def load_checkpoint(
    path: str | Path,
    config: str | Path | dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild the model from the embedded config and load the weights (eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from mtl_perception.model import build_model

    meta = read_metadata(path)
    try:
        embedded = json.loads(meta["config"])
    except ValueError as exc:
        embedded = exc
    if not isinstance(embedded, dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: the embedded model config is not a JSON mapping ({embedded}); the file is "
            "corrupt: use another checkpoint or train again"
        )
    if config is not None:
        wanted = load_config(config)
        diffs = diff_configs(embedded, wanted)
        if diffs:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was trained with a different model config; differing keys: "
                f"{', '.join(diffs[:8])}. Pass the matching config or omit it to use the embedded one"
            )
    try:
        model = build_model(embedded, load_pretrained=False)  # the checkpoint holds every weight
        state = load_file(str(path), device=str(map_location))
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be loaded ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
            "the file is corrupt or from an incompatible version: use another checkpoint or train again"
        ) from exc
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
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # a tensor of another shape than the config builds
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match its config ({' '.join(str(exc).split())[:300]}); "
            "the file is corrupt: use another checkpoint or train again"
        ) from exc
    model.checkpoint_metadata = meta
    return model.to(map_location).eval()


def rewrite_metadata(src: str | Path, dst: str | Path, updates: dict[str, str]) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with metadata keys ``updates`` set; the tensor bytes are
    copied verbatim (only the JSON header changes), so the weights stay bit-identical.

    safetensors layout: 8-byte little-endian header length, JSON header (``__metadata__`` plus
    each tensor's dtype, shape and byte offsets relative to the data), then the data. Offsets do
    not move, so a new header in front of the same data is a valid file. Atomic (temp + rename);
    ``dst`` may be ``src``."""
    read_metadata(src)  # a readable mtl_perception checkpoint, or CheckpointError naming the fix
    raw = Path(src).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = dict(header.get("__metadata__") or {})
    meta.update({str(k): str(v) for k, v in updates.items()})
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces to 8-byte alignment
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst, len(text).to_bytes(8, "little") + text + raw[8 + n :])
    return dst


def tensors_sha256(path: str | Path) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (sorted by name): equal for two
    checkpoints with identical weights whatever their metadata."""
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        for name in sorted(f.keys()):
            t = f.get_tensor(name).contiguous().reshape(-1)
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
