"""Cityscapes train-id class list and colour palette.

Kept in its own tiny module (numpy only) so that the renderer, the dataset readers, the
evaluation code and the ROS nodes all agree on one definition of the 19 classes.
"""

from __future__ import annotations

import numpy as np

#: The 19 Cityscapes evaluation classes, indexed by train id (255 = ignore).
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

#: Standard Cityscapes colours (RGB) for the 19 train ids.
CITYSCAPES_PALETTE: np.ndarray = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)
CITYSCAPES_PALETTE.setflags(write=False)

IGNORE_INDEX: int = 255
