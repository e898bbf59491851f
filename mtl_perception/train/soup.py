"""Weight averaging of fine-tuned checkpoints of one model (a "model soup": Wortsman et al., ICML 2022;
WiSE-FT, Wortsman et al., CVPR 2022).

Two checkpoints that share an ancestor (one continued from the other, or both from one start) sit in
one basin of the loss; their weighted mean often generalises better out of distribution than either.
Here: the shipped model and its continuation on newer rendered frames, judged on real frames.

The result takes the FIRST checkpoint's config, tensor names and storage dtypes; every one of its
tensors must exist with the same shape in every other checkpoint (tensors only the others have, e.g. an
uncertainty head, are left out and listed). Floating tensors are averaged in float32; integer buffers
(BatchNorm's ``num_batches_tracked``) are the first's. The calibrated temperature is dropped (it was
fitted to other weights: run ``mtl-perception calibrate`` again); provenance goes to the metadata.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mtl_perception.model.errors import CheckpointError
from mtl_perception.train.logit_adjust import ADJUSTMENT_KEY, CLASS_BALANCE_KEY

#: metadata that describes the first checkpoint's exact weights and no longer holds for an average
STALE_METADATA = ("semseg_temperature", "semseg_calibration")


def _combined_class_balance(metas: list[dict[str, str]], weights: list[float]) -> dict[str, Any] | None:
    """The class-balance record of a soup: per task, the weighted geometric mean of the sources' loss
    weights (a source without one counts as unweighted, w = 1). Its log is the weighted mean of the
    sources' log-weights, the logit shift of the averaged classifier bias (train/logit_adjust.py)."""
    import numpy as np

    from mtl_perception.train.logit_adjust import mean_log_weights, weights_of_record

    records = [
        weights_of_record(json.loads(m[CLASS_BALANCE_KEY]), "checkpoint") if CLASS_BALANCE_KEY in m else {}
        for m in metas
    ]
    if not any(records):
        return None
    shift = mean_log_weights(records, weights)
    return {
        task: {
            "weights": [round(float(v), 6) for v in np.exp(log_w)],
            "combined": "weighted geometric mean of the averaged checkpoints' weights (1 where one had none)",
        }
        for task, log_w in shift.items()
    }


def average_checkpoints(paths: list[str | Path], out: str | Path, weights: list[float] | None = None) -> dict[str, Any]:
    """Write the weighted mean of ``paths`` to ``out``; returns a summary (JSON-ready).

    ``weights``: one per checkpoint, >= 0, summing to 1 (default: uniform)."""
    import torch
    from safetensors import safe_open

    from mtl_perception.deploy.artifacts import checkpoint_hash  # sha256 of the file
    from mtl_perception.model.checkpoint import read_metadata, write_tensors
    from mtl_perception.model.config import diff_configs

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise CheckpointError("average needs at least two checkpoints")
    if weights is None:
        weights = [1.0 / len(paths)] * len(paths)
    if len(weights) != len(paths):
        raise CheckpointError(f"{len(weights)} weights for {len(paths)} checkpoints; give one weight per checkpoint")
    if any(not math.isfinite(w) or w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise CheckpointError(f"weights must be >= 0 and sum to 1, got {weights}")
    metas = [read_metadata(p) for p in paths]  # names a missing / foreign file clearly
    for p, m in zip(paths, metas):
        if ADJUSTMENT_KEY in m:
            raise CheckpointError(
                f"{p} is logit-adjusted: average the unadjusted checkpoints, then run `mtl-perception logit-adjust` "
                "on the soup"
            )
    configs = [json.loads(m["config"]) for m in metas]
    config_diffs = {str(p): diff_configs(configs[0], c) for p, c in zip(paths[1:], configs[1:])}
    out = Path(out)
    with safe_open(str(paths[0]), "pt") as first:
        names = list(first.keys())
        acc = {}
        for k in names:
            t = first.get_tensor(k)
            acc[k] = (t, t.float() * weights[0] if t.is_floating_point() else None)
    left_out: dict[str, list[str]] = {}
    for p, w in zip(paths[1:], weights[1:]):
        with safe_open(str(p), "pt") as f:
            keys = set(f.keys())
            missing = [k for k in names if k not in keys]
            if missing:
                raise CheckpointError(
                    f"{p} has no tensor {missing[0]!r} of {paths[0]} ({len(missing)} missing): average checkpoints "
                    "of one model (the first sets the architecture)"
                )
            for k in names:
                t0, s = acc[k]
                t = f.get_tensor(k)
                if tuple(t.shape) != tuple(t0.shape):
                    raise CheckpointError(
                        f"tensor {k!r} is {tuple(t.shape)} in {p} but {tuple(t0.shape)} in {paths[0]}: not the same "
                        "architecture"
                    )
                if s is not None:
                    acc[k] = (t0, s + t.float() * w)
            extra = sorted(keys - set(names))
            if extra:
                left_out[str(p)] = extra
    tensors = {k: (s.to(t0.dtype) if s is not None else t0).contiguous() for k, (t0, s) in acc.items()}
    meta = {k: v for k, v in metas[0].items() if k not in STALE_METADATA and k != CLASS_BALANCE_KEY}
    combined = _combined_class_balance(metas, weights)
    if combined:
        meta[CLASS_BALANCE_KEY] = json.dumps(combined)
    sources = [
        {"path": str(p), "sha256": checkpoint_hash(p), "weight": w, "step": m.get("step")}
        for p, w, m in zip(paths, weights, metas)
    ]
    meta["averaged_from"] = json.dumps(sources)
    write_tensors(out, tensors, meta)
    return {
        "out": str(out),
        "tensors": len(tensors),
        "averaged_tensors": sum(1 for t0, s in acc.values() if s is not None),
        "sources": sources,
        "left_out": left_out,
        "config_differences": {k: v for k, v in config_diffs.items() if v},
        "dropped_metadata": [k for k in STALE_METADATA if k in metas[0]],
        "torch": torch.__version__,
    }
