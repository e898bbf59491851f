"""Post-hoc logit adjustment of a model trained with a class-balanced semantic loss.

A cross-entropy weighted by ``w_c`` (``class_balance``, train/class_balance.py) is minimised by
``q(c|x)`` proportional to ``w_c p(c|x)``: the weights add ``log w_c`` to class c's logit, so the
head over-predicts the up-weighted (rare) classes. Subtracting ``tau * log w_c`` again (tau = 1: the
exact correction) restores the unweighted decision rule while keeping the features the weighted loss
trained (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021). The shift is a
constant per class, so it is folded into the classifier's bias (``heads.<task>.out.bias``): free at
inference, and the exported graph, engines and node need nothing new.

The weights come from the checkpoint's own ``class_balance`` metadata (written by the trainer and
combined by ``average``), or from the runs' ``config.json`` files (``weights_from``; several: the
mean of their log-weights, right for a uniform soup of those runs). The result records what was
done in ``logit_adjustment`` (and refuses to be adjusted twice) and drops the calibrated
temperature, which was fitted to the old logits: run ``mtl-perception calibrate`` on it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.model.errors import CheckpointError

#: checkpoint metadata keys
CLASS_BALANCE_KEY = "class_balance"
ADJUSTMENT_KEY = "logit_adjustment"
#: fitted to the logits before the shift; no longer true afterwards
STALE_METADATA = ("semseg_temperature", "semseg_calibration")


def weights_of_record(section: Any, where: str) -> dict[str, np.ndarray]:
    """``{task: weights}`` of a ``class_balance`` record ``{task: {"weights": [...], ...}}``."""
    if not isinstance(section, dict) or not section:
        raise CheckpointError(f"{where} records no class-balance weights (the run was not class-balanced)")
    out = {}
    for task, rec in section.items():
        w = rec.get("weights") if isinstance(rec, dict) else None
        if not isinstance(w, list) or len(w) < 2:
            raise CheckpointError(f"{where}: class_balance.{task} has no list of weights")
        a = np.asarray(w, dtype=np.float64)
        if not np.all(np.isfinite(a)) or not np.all(a > 0):
            raise CheckpointError(f"{where}: class_balance.{task}.weights must all be finite and > 0")
        out[task] = a
    return out


def read_class_weights(source: str | Path) -> dict[str, np.ndarray]:
    """The per-task loss weights a run was trained with: from a run folder or its ``config.json``
    (the trainer's record), or from a checkpoint's ``class_balance`` metadata."""
    from mtl_perception.model.checkpoint import read_metadata

    p = Path(source)
    if p.is_dir():
        p = p / "config.json"
    if p.suffix == ".safetensors":
        meta = read_metadata(p)
        if CLASS_BALANCE_KEY not in meta:
            raise CheckpointError(
                f"{p} has no {CLASS_BALANCE_KEY} metadata: pass the run's config.json (runs/RUN/config.json) instead"
            )
        return weights_of_record(json.loads(meta[CLASS_BALANCE_KEY]), str(p))
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file; pass a run folder, its config.json or a checkpoint")
    try:
        record = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p} is not a run's config.json ({e}); pass runs/RUN/config.json") from e
    if not isinstance(record, dict) or CLASS_BALANCE_KEY not in record:
        raise CheckpointError(f"{p} is not a run's config.json (no {CLASS_BALANCE_KEY} key); pass runs/RUN/config.json")
    return weights_of_record(record[CLASS_BALANCE_KEY], str(p))


def mean_log_weights(records: list[dict[str, np.ndarray]], mix: list[float] | None = None) -> dict[str, np.ndarray]:
    """The ``mix``-weighted mean (default uniform) over runs of log w, per task: the logit shift of
    their weighted soup (its classifier bias is the same mean of theirs). A run without a record for
    a task counts as unweighted (log w = 0)."""
    if not records:
        raise CheckpointError("no class-balance weights given")
    mix = mix if mix is not None else [1.0 / len(records)] * len(records)
    tasks = sorted({t for r in records for t in r})
    out = {}
    for task in tasks:
        sizes = {len(r[task]) for r in records if task in r}
        if len(sizes) != 1:
            raise CheckpointError(f"class_balance.{task}: the runs disagree on the number of classes {sorted(sizes)}")
        n = sizes.pop()
        out[task] = sum(a * (np.log(r[task]) if task in r else np.zeros(n)) for r, a in zip(records, mix))
    return out


def adjust_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    tau: float = 1.0,
    weights_from: list[str | Path] | None = None,
) -> dict[str, Any]:
    """Write ``checkpoint`` with ``tau * mean log w_c`` subtracted from each class-balanced semantic
    head's bias to ``out``; returns a JSON-ready summary."""
    import torch
    from safetensors import safe_open

    from mtl_perception.model.checkpoint import read_metadata, write_tensors

    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or not tau > 0:
        raise ValueError(f"tau must be a number > 0 (1 = the exact correction), got {tau!r}")
    checkpoint, out = Path(checkpoint), Path(out)
    meta = read_metadata(checkpoint)  # names a missing / foreign file clearly
    if ADJUSTMENT_KEY in meta:
        raise CheckpointError(
            f"{checkpoint} is already logit-adjusted ({meta[ADJUSTMENT_KEY][:120]}); adjust the unadjusted checkpoint"
        )
    if weights_from:
        sources = [str(p) for p in weights_from]
        shift = mean_log_weights([read_class_weights(p) for p in weights_from])
    else:
        if CLASS_BALANCE_KEY not in meta:
            raise CheckpointError(
                f"{checkpoint} records no class-balance weights: pass --class-weights-from runs/RUN/config.json "
                "for each run it was trained or averaged from"
            )
        sources = [str(checkpoint)]
        own = weights_of_record(json.loads(meta[CLASS_BALANCE_KEY]), str(checkpoint))
        shift = {t: np.log(w) for t, w in own.items()}
    config = json.loads(meta["config"])
    tasks = config.get("tasks", {})
    with safe_open(str(checkpoint), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    applied = {}
    for task, log_w in shift.items():
        spec = tasks.get(task)
        if not isinstance(spec, dict) or spec.get("type", task) != "semseg":
            raise CheckpointError(f"{checkpoint} has no semantic task {task!r} (tasks {sorted(tasks)}): wrong weights?")
        key = f"heads.{task}.out.bias"
        bias = tensors.get(key)
        if bias is None or bias.ndim != 1:
            raise CheckpointError(f"{checkpoint} has no classifier bias {key!r} to fold the adjustment into")
        if bias.numel() != len(log_w):
            raise CheckpointError(
                f"class weights for {len(log_w)} classes but {key} has {bias.numel()}: weights of another model?"
            )
        delta = torch.tensor(tau * log_w, dtype=torch.float32)
        tensors[key] = (bias.float() - delta).to(bias.dtype).contiguous()
        applied[task] = [round(float(v), 6) for v in (tau * log_w)]
    new_meta = {k: v for k, v in meta.items() if k not in STALE_METADATA}
    record = {"tau": float(tau), "subtracted": applied, "weights_from": sources}
    new_meta[ADJUSTMENT_KEY] = json.dumps(record)
    write_tensors(out, tensors, new_meta)
    return {
        "out": str(out),
        "checkpoint": str(checkpoint),
        **record,
        "dropped_metadata": [k for k in STALE_METADATA if k in meta],
    }
