"""Rare-class sampling: show the network the classes it almost never sees, more often.

In the rendered streets riders, bicycles, motorcycles, buses and traffic lights are in a few
frames and cover a few hundred pixels there; a random frame and a random crop rarely contain one,
so a short run barely learns them (real-frame IoU 0 for riders and bicycles). DAFormer (Hoyer et
al., CVPR 2022), for the same synthetic-to-real setting, samples the *class* first and then a
frame that contains it:

    P(c) = softmax_c((1 - f_c) / T),   f_c the class's pixel frequency in the training set

then a frame uniformly among those with at least ``min_pixels`` of c, and a crop that contains c.
A small temperature T favours the rarest classes. Here a ``fraction`` of the stream is drawn this
way (the rest is the usual shuffled pass), so the common scenes keep most of the budget.

Recipe key ``rare_class_sampling: {temperature: 0.01, fraction: 0.5, min_pixels: 64, classes: null}``;
``classes`` (train ids or Cityscapes names) limits the draw to those classes. The draws
depend only on each item's augmentation seed, so a ``--resume``d run sees the same stream.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from mtl_perception.model.errors import ConfigError
from mtl_perception.train.recipe_section import positive_number, recipe_section

DEFAULTS: dict[str, Any] = {"temperature": 0.01, "fraction": 0.5, "min_pixels": 64, "classes": None}


def validate_rare_class_sampling(spec: Any) -> dict[str, Any] | None:
    """The ``rare_class_sampling`` section of a train recipe with defaults filled in, or None when off."""
    out = recipe_section("rare_class_sampling", spec, DEFAULTS, "{temperature: 0.01, fraction: 0.5}")
    if out is None:
        return None
    t, frac, px = out["temperature"], out["fraction"], out["min_pixels"]
    positive_number("rare_class_sampling.temperature", t)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise ConfigError(f"rare_class_sampling.fraction must be in (0, 1], got {frac!r}")
    if isinstance(px, bool) or not isinstance(px, int) or px < 1:
        raise ConfigError(f"rare_class_sampling.min_pixels must be a positive integer, got {px!r}")
    classes = out["classes"]
    if classes is not None:
        from mtl_perception.data.cityscapes_classes import CITYSCAPES_CLASSES

        if not isinstance(classes, list) or not classes:
            raise ConfigError(f"rare_class_sampling.classes must be a list of class ids or names, got {classes!r}")
        ids = []
        for c in classes:
            if isinstance(c, str) and c in CITYSCAPES_CLASSES:
                ids.append(CITYSCAPES_CLASSES.index(c))
            elif isinstance(c, int) and not isinstance(c, bool) and c >= 0:
                ids.append(c)
            else:
                raise ConfigError(
                    f"rare_class_sampling.classes: {c!r} is neither a train id >= 0 nor a class name "
                    f"({', '.join(CITYSCAPES_CLASSES)})"
                )
        classes = sorted(set(ids))
    return {"temperature": float(t), "fraction": float(frac), "min_pixels": px, "classes": classes}


def class_pixel_counts(dataset: Any, num_classes: int, ignore_index: int = 255, progress: bool = False) -> np.ndarray:
    """``counts[i, c]``: pixels of class c in frame i (raw labels, no augmentation). Uses the
    dataset's ``semseg(i)`` reader when it has one (labels only, no image decode)."""
    from tqdm import tqdm

    from mtl_perception.train.class_balance import frame_class_counts

    n = len(dataset)
    if n == 0:
        raise ValueError("rare_class_sampling: the training set is empty")
    read = getattr(dataset, "semseg", None)
    counts = np.zeros((n, num_classes), dtype=np.int64)
    for i in tqdm(range(n), desc="class census", unit="frame", disable=None if progress else True, file=sys.stderr):
        labels = read(i) if callable(read) else dataset[i].get("semseg")
        if labels is None:
            raise ValueError(f"rare_class_sampling: training sample {i} has no semantic labels")
        counts[i] = frame_class_counts(labels, num_classes, ignore_index)
    return counts


class RareClassSampler:
    """Draws (frame, class) pairs: the class from ``softmax((1 - f) / T)`` over the classes (of
    ``classes``, default all) that at least one frame shows with ``min_pixels`` pixels, then a frame
    uniformly among those frames. ``fraction``: the share of the training stream drawn this way."""

    def __init__(
        self,
        counts: np.ndarray,
        temperature: float = 0.01,
        min_pixels: int = 64,
        classes: list[int] | None = None,
        fraction: float = 0.5,
    ) -> None:
        self.fraction = float(fraction)
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[0] == 0:
            raise ValueError(f"rare_class_sampling: counts must be (frames, classes), got shape {counts.shape}")
        total = counts.sum()
        if total == 0:
            raise ValueError("rare_class_sampling: every training label is ignored; nothing to sample")
        self.frequency = counts.sum(axis=0) / total
        shown = counts >= min_pixels
        self.frames_of = [np.flatnonzero(shown[:, c]) for c in range(counts.shape[1])]
        eligible = np.array([len(f) > 0 for f in self.frames_of])
        if classes is not None:
            eligible &= np.isin(np.arange(counts.shape[1]), classes)
        if not eligible.any():
            raise ValueError(
                f"rare_class_sampling: no frame shows any {'of classes ' + str(classes) if classes else 'class'} "
                f"with min_pixels={min_pixels} pixels; lower min_pixels or name other classes"
            )
        logits = np.where(eligible, (1.0 - self.frequency) / temperature, -np.inf)
        p = np.exp(logits - logits[eligible].max())
        self.probability = p / p.sum()

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        c = int(rng.choice(len(self.probability), p=self.probability))
        frames = self.frames_of[c]
        return int(frames[rng.integers(len(frames))]), c

    def summary(self, names: list[str] | None = None) -> dict[str, Any]:
        """What the run records: per class its pixel frequency, probability and number of frames."""
        names = names or [str(c) for c in range(len(self.probability))]
        return {
            name: {
                "frequency": round(float(self.frequency[c]), 6),
                "probability": round(float(self.probability[c]), 4),
                "frames": len(self.frames_of[c]),
            }
            for c, name in enumerate(names)
        }
