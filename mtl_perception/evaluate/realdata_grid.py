"""Picture grid of the real frames: one row per frame, input | per model (classes, depth) | ground truth.

Tiles share one width (columns line up) and keep each frame's aspect, so rows differ in height.
Colours come from ``mtl_perception.visualize`` (Cityscapes palette, turbo log-depth), the same as
every other report and the node; CamVid GT is drawn in the Cityscapes colours of its classes.
Sparse LiDAR GT is spread by a nearest-point dilation for display only (scores use raw pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtl_perception.atomic_io import atomic_imwrite
from mtl_perception.evaluate.realdata import CAMVID_TO_CITYSCAPES_DISPLAY
from mtl_perception.visualize import colorize_depth, colorize_labels, colorize_labels_resized

TILE_WIDTH = 320
HEADER_H = 22
GAP = 2


def _size_for(frame_hw: tuple[int, int], width: int) -> tuple[int, int]:
    h, w = frame_hw
    return max(1, round(h * width / w)), width


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.42) -> None:
    """White text on a dark box (readable on any tile)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    x, y = org
    cv2.rectangle(img, (x - 2, y - th - 3), (x + tw + 2, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def sparse_depth_for_display(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Depth (0/NaN invalid) shrunk to ``size`` (h, w) keeping sparse points visible: each output
    pixel takes the nearest valid point of its neighbourhood."""
    d = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0)
    h, w = size
    k = 2 * int(np.ceil(d.shape[1] / w)) + 1
    big = np.float32(1e6)
    inv = np.where(d > 0, big - d, np.float32(0.0))  # dilate = max: nearest point wins
    inv = cv2.dilate(inv, np.ones((k, k), np.uint8))
    inv = cv2.resize(inv, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.where(inv > 0, big - inv, np.float32(0.0))


def gt_tile(sample: dict[str, Any], size: tuple[int, int], max_depth: float = 80.0) -> tuple[np.ndarray, str]:
    """(tile, caption) of the frame's ground truth: classes if labelled, else depth, else blank."""
    h, w = size
    sem = sample.get("semseg")
    if sem is not None:
        if sample.get("label_space") == "camvid":
            sem = CAMVID_TO_CITYSCAPES_DISPLAY[sem]
        return cv2.resize(colorize_labels(sem), (w, h), interpolation=cv2.INTER_NEAREST), "GT classes"
    dep = sample.get("depth")
    if dep is not None:
        return colorize_depth(sparse_depth_for_display(dep, size), max_depth), "GT depth"
    return np.zeros((h, w, 3), np.uint8), "no GT"


@dataclass
class GridCollector:
    """``on_frame`` callback for ``run_realdata``: keeps small tiles of every frame, then writes the PNG."""

    model_labels: Sequence[str]
    width: int = TILE_WIDTH
    max_depth: float = 80.0
    rows: list[list[np.ndarray]] = field(default_factory=list)

    def __call__(self, sample: dict[str, Any], results: list[Any]) -> None:
        size = _size_for(sample["image"].shape[:2], self.width)
        h, w = size
        image = cv2.resize(sample["image"], (w, h), interpolation=cv2.INTER_AREA)
        _text(image, f"{sample['set']}/{sample['name']}"[:48], (4, 14))
        tiles = [image]
        for res in results:
            tiles.append(colorize_labels_resized(res.grid_labels, size))
            depth = cv2.resize(res.depth, (w, h), interpolation=cv2.INTER_NEAREST)
            tiles.append(colorize_depth(depth, self.max_depth))
        gt, caption = gt_tile(sample, size, self.max_depth)
        _text(gt, caption, (4, 14))
        tiles.append(gt)
        self.rows.append(tiles)

    @property
    def headers(self) -> list[str]:
        cols = ["input"]
        for lab in self.model_labels:
            cols += [f"{lab}: classes", f"{lab}: depth"]
        return [*cols, "ground truth"]

    def image(self) -> np.ndarray:
        """The grid as one RGB array (header strip, then one row per frame)."""
        if not self.rows:
            raise ValueError("no frames in the grid")
        n = len(self.rows[0])
        width = n * self.width + (n - 1) * GAP
        header = np.full((HEADER_H, width, 3), 255, np.uint8)
        for i, name in enumerate(self.headers):
            x = i * (self.width + GAP) + 4
            cv2.putText(header, name[:40], (x, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        parts = [header]
        for tiles in self.rows:
            h = tiles[0].shape[0]
            row = np.full((h + GAP, width, 3), 255, np.uint8)
            for i, t in enumerate(tiles):
                x = i * (self.width + GAP)
                row[GAP:, x : x + self.width] = t
            parts.append(row)
        return np.concatenate(parts, 0)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # PNG at the highest zlib level (smaller for the README at no loss); JPEG at quality 90
        params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if path.suffix.lower() == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 90]
        return atomic_imwrite(path, cv2.cvtColor(self.image(), cv2.COLOR_RGB2BGR), params)
