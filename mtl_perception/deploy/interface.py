"""Types shared by the engine, its backends and the artifact cache: ``EngineError``, ``ModelInfo``
and the ``Backend`` protocol.

A leaf module: it imports nothing of ``mtl_perception``, so backends and ``artifacts`` can import
it at module level without pulling in ``engine`` (which imports them lazily): no import cycle.
(Not named ``types.py``: run as a script from this folder, that would shadow the standard library.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

# Horizontal field of view assumed without intrinsics. Equal to geometry.DEFAULT_HFOV_DEG
# (test/test_deploy_imports.py pins it); not imported from there so this module stays a leaf.
DEFAULT_HFOV_DEG = 70.0


class EngineError(RuntimeError):
    """The engine cannot be built as asked; the message names the cause and the fix."""


class Backend(Protocol):
    name: str
    precision: str
    device: str

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class ModelInfo:
    """What the engine needs to know about the network, from a checkpoint or ONNX metadata."""

    input_size: tuple[int, int]
    mean: list[float]
    std: list[float]
    classes: list[str]
    palette: list[list[int]]
    decoder: str
    model_hash: str
    max_depth: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)
    # camera handling (model config ``camera``): letterbox keeps the aspect; a canonical focal length
    # means the depth output is canonical and becomes metres through the frame's intrinsics
    resize: str = "stretch"
    canonical_focal: float | None = None
    default_hfov_deg: float = DEFAULT_HFOV_DEG
    # softmax temperature of the semantic confidence (checkpoint metadata ``semseg_temperature``,
    # fitted by ``mtl-perception calibrate``); 1.0 = uncalibrated
    semseg_temperature: float = 1.0
