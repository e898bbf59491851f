"""Class-balanced cross-entropy weights from the training set's label frequencies.

Street scenes are dominated by road, building, vegetation and sky; riders, bicycles, traffic
lights, fences and walls cover well under 1 % of the pixels. With the plain mean over pixels a
short run barely moves those classes' logits (a head that never predicted a rider keeps not
predicting one), and mIoU weights every class the same. ``class_balance`` in a train recipe
re-weights the semantic loss per class, as ENet (Paszke et al. 2016) and most Cityscapes
recipes do:

    w_c = f_c ** -power,  scaled so that sum_c f_c * w_c = 1 (the pixel-weighted mean stays 1),
    then clipped to [min_weight, max_weight]

``power`` 0.5 (inverse square-root frequency) is the mild, common choice; 1.0 is full inverse
frequency. Classes that never occur in the sampled frames get weight 1 (they are never a target,
so the value only matters for the record).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_perception.model.errors import ConfigError
from mtl_perception.train.recipe_section import recipe_section

DEFAULTS: dict[str, Any] = {"power": 0.5, "max_weight": 10.0, "min_weight": 0.1, "frames": 200}


def validate_class_balance(spec: Any) -> dict[str, Any] | None:
    """The ``class_balance`` section of a train recipe with defaults filled in, or None when off.

    Either ``{power, max_weight, min_weight, frames}`` (weights from the training set) or
    ``{weights: [w_0, ..., w_{C-1}]}`` (explicit)."""
    out = recipe_section(
        "class_balance", spec, DEFAULTS, "{power: 0.5, max_weight: 10} or {weights: [...]}", extra_keys=["weights"]
    )
    if out is None:
        return None
    if "weights" in spec:
        w = spec["weights"]
        if (
            not isinstance(w, list)
            or len(w) < 2
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0 for x in w)
        ):
            raise ConfigError(f"class_balance.weights must be a list of numbers > 0, one per class; got {w!r}")
        if set(spec) != {"weights"}:
            raise ConfigError("class_balance: give either weights or power/max_weight/min_weight/frames, not both")
        return {"weights": [float(x) for x in w]}
    for key in ("power", "max_weight", "min_weight"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ConfigError(f"class_balance.{key} must be a number >= 0, got {v!r}")
        out[key] = float(v)
    if not 0 < out["min_weight"] <= 1 <= out["max_weight"]:
        raise ConfigError(
            f"class_balance: need 0 < min_weight <= 1 <= max_weight, got {out['min_weight']} and {out['max_weight']}"
        )
    frames = out["frames"]
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ConfigError(f"class_balance.frames must be a positive integer, got {frames!r}")
    return out


def frame_class_counts(labels: Any, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Pixels of each class in one label map; ignored pixels and ids >= num_classes do not count."""
    ids = np.asarray(labels).ravel()
    ids = ids[(ids != ignore_index) & (ids < num_classes)]
    return np.bincount(ids.astype(np.int64), minlength=num_classes)[:num_classes]


def label_frequencies(
    dataset: Any, num_classes: int, frames: int, ignore_index: int = 255, key: str = "semseg"
) -> np.ndarray:
    """Pixel frequency of each class over ``frames`` frames spread evenly through ``dataset``
    (its raw samples: no augmentation). Ignored pixels and ids >= num_classes do not count."""
    n = len(dataset)
    if n == 0:
        raise ValueError("class_balance: the training set is empty")
    counts = np.zeros(num_classes, dtype=np.int64)
    for i in np.unique(np.linspace(0, n - 1, min(frames, n)).round().astype(int)):
        labels = dataset[int(i)].get(key)
        if labels is None:
            raise ValueError(f"class_balance: training sample {int(i)} has no {key!r} labels")
        counts += frame_class_counts(labels, num_classes, ignore_index)
    total = counts.sum()
    if total == 0:
        raise ValueError("class_balance: every sampled training label is ignored; nothing to balance")
    return counts / total


def balanced_weights(
    freq: np.ndarray, power: float = 0.5, max_weight: float = 10.0, min_weight: float = 0.1
) -> np.ndarray:
    """Per-class weights ``f ** -power`` normalised to a pixel-weighted mean of 1, then clipped."""
    freq = np.asarray(freq, dtype=np.float64)
    present = freq > 0
    w = np.ones_like(freq)
    if not present.any():
        return w
    raw = freq[present] ** -power
    raw /= float((freq[present] * raw).sum())
    w[present] = np.clip(raw, min_weight, max_weight)
    return w
