"""Network outputs -> per-frame products at the frame's resolution (shared by node, eval, replay).

Labels: argmax on the network grid, then nearest-neighbour resize (cheap, never invents
classes). Depth: bilinear resize; invalid (non-finite or <= 0) pixels stay NaN (REP 118) and
do not bleed into valid neighbours.
"""

from __future__ import annotations

import cv2
import numpy as np


def labels_from_logits(logits: np.ndarray) -> np.ndarray:
    """(K, h, w) logits -> (h, w) uint8 class ids; identical to ``np.argmax(logits, 0)`` for finite
    logits (ties go to the lower id).

    A running maximum with OpenCV's vectorised compare/max is ~5x faster than ``np.argmax`` over
    the strided class axis (~1.8 ms vs ~8.7 ms for 19x256x512 on one core): the node's budget.
    """
    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[0] > 255 or logits.dtype != np.float32:
        return np.argmax(logits, axis=0).astype(np.uint8)
    best = np.array(logits[0], np.float32, copy=True)
    labels = np.zeros(best.shape, np.uint8)
    for k in range(1, logits.shape[0]):
        greater = cv2.compare(logits[k], best, cv2.CMP_GT)
        cv2.max(best, logits[k], dst=best)
        # masked set via OpenCV (boolean-mask indexing in numpy would cost ~4 ms of the budget)
        cv2.subtract(labels, labels, dst=labels, mask=greater)
        cv2.add(labels, k, dst=labels, mask=greater)
    return labels


def resize_labels(labels: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Nearest-neighbour resize; ``out`` (uint8, ``size``) is filled instead of allocating."""
    h, w = size
    if labels.shape == (h, w):
        return labels
    if out is not None and out.shape == (h, w) and out.dtype == np.uint8:
        return cv2.resize(labels, (w, h), dst=out, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)


def resize_depth(depth: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear resize of metres; NaN/<=0 marks invalid and is excluded from interpolation.

    ``out`` (float32, ``size``) is filled instead of allocating when every pixel is valid.
    """
    h, w = size
    d = np.asarray(depth, np.float32)
    valid = np.isfinite(d) & (d > 0)
    if d.shape == (h, w):
        return np.where(valid, d, np.nan).astype(np.float32)
    if valid.all():
        if out is not None and out.shape == (h, w) and out.dtype == np.float32:
            return cv2.resize(d, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
        return cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
    # normalised convolution: interpolate valid values and the valid mask, divide
    filled = np.where(valid, d, 0).astype(np.float32)
    num = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    den = cv2.resize(valid.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.full((h, w), np.nan, np.float32)
    ok = den > 0.5
    out[ok] = num[ok] / den[ok]
    return out


def frame_products(outputs: dict[str, np.ndarray], index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(labels uint8 HxW, depth float32 HxW metres) of image ``index`` of a batch, at ``size``.

    The whole network grid is resized to the frame: right for stretch models with metric depth
    (every checkpoint before camera-aware depth) only. A letterboxing or canonical-camera model
    needs the content crop and the frame's K: use ``pipeline.FramePipeline.process``."""
    labels = resize_labels(labels_from_logits(outputs["semseg"][index]), size)
    depth = resize_depth(outputs["depth"][index, 0], size)
    return labels, depth
