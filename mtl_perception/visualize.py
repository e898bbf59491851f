"""Colourisation of class maps and depth, shared by reports, tools and the ROS node (numpy + cv2)."""

from __future__ import annotations

import cv2
import numpy as np

from mtl_perception.data.cityscapes_classes import CITYSCAPES_PALETTE

IGNORE_COLOR = (0, 0, 0)


def colorize_labels(labels: np.ndarray, palette: np.ndarray = CITYSCAPES_PALETTE) -> np.ndarray:
    """uint8 (H,W) class ids -> uint8 (H,W,3) RGB; ids outside the palette (255) are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:] = IGNORE_COLOR
    lut[: len(palette)] = palette
    labels = np.ascontiguousarray(labels, np.uint8)
    if labels.ndim != 2:
        return lut[labels]
    # cv2.LUT on a 3-channel copy is ~8x faster than numpy fancy indexing at 720p (node budget)
    return cv2.LUT(cv2.merge([labels, labels, labels]), lut.reshape(1, 256, 3))


def colorize_labels_resized(
    grid_labels: np.ndarray, size: tuple[int, int], palette: np.ndarray = CITYSCAPES_PALETTE
) -> np.ndarray:
    """``colorize_labels(resize_labels(grid_labels, size))`` computed the cheap way round: colour the
    small grid, then nearest-resize the colours (nearest picks the same source pixel per channel)."""
    rgb = colorize_labels(grid_labels, palette)
    h, w = size
    return rgb if rgb.shape[:2] == (h, w) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_NEAREST)


def colorize_depth(depth: np.ndarray, max_depth: float = 80.0, min_depth: float = 0.5) -> np.ndarray:
    """float (H,W) metres -> RGB (turbo, near = red, far = blue, log scale); invalid is black."""
    d = np.asarray(depth, np.float32)
    valid = np.isfinite(d) & (d > 0)
    t = np.zeros_like(d)
    lo, hi = np.log(min_depth), np.log(max_depth)
    t[valid] = (np.log(np.clip(d[valid], min_depth, max_depth)) - lo) / (hi - lo)
    gray = (255 * (1.0 - t)).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def blend(image: np.ndarray, overlay: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * overlay + (1 - alpha) * image, uint8."""
    if alpha <= 0:
        return image
    if alpha >= 1:
        return overlay
    return cv2.addWeighted(overlay, float(alpha), image, float(1 - alpha), 0.0)


def error_map(pred: np.ndarray, gt: np.ndarray, max_abs_rel: float = 0.5) -> np.ndarray:
    """Absolute relative depth error as RGB (0 = dark, >= max_abs_rel = bright); no GT = black."""
    valid = np.isfinite(gt) & (gt > 0)
    e = np.zeros(gt.shape, np.float32)
    e[valid] = np.abs(pred[valid] - gt[valid]) / gt[valid]
    gray = (255 * np.clip(e / max_abs_rel, 0, 1)).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb
