"""The one registry of decoder variants.

A variant is a ``Decoder`` subclass decorated with ``@register_decoder("name")`` in a module
under ``mtl_perception/model/decoders/`` plus ``config/models/<name>.yaml``. Each class
declares ``DEFAULTS`` (its decoder-specific config keys with default values); unknown keys
and wrong types are rejected with a message that lists the valid keys.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mtl_perception.model.errors import ConfigError

DECODERS: dict[str, type[Decoder]] = {}

COMMON_KEYS = {"type", "channels"}


class Decoder(nn.Module):
    """Base class: backbone features -> one feature map per task.

    ``forward(feats)`` takes the backbone's 4 levels (B, D_l, h, w) and returns
    ``(task_features, aux_losses)``: ``{task: (B, out_channels, h, w)}`` at the backbone
    grid (1/16) and a dict of unweighted-by-task auxiliary losses already multiplied by
    their configured weights (empty in eval mode). Heads and upsampling are shared and live
    in ``MultiTaskModel``.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {}
    OFFICIAL: ClassVar[bool] = True  # False for our unofficial re-creations (no public code)

    def __init__(self, cfg: dict[str, Any], in_dims: list[int], tasks: list[str], grid: tuple[int, int]):
        super().__init__()
        self.cfg = cfg
        self.tasks = list(tasks)
        self.out_channels: int = int(cfg["channels"])
        self.grid = tuple(grid)

    def deploy_(self) -> None:
        """Switch to the inference (re-parameterized) form in place. Default: nothing to fold."""

    def forward(self, feats: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raise NotImplementedError


def register_decoder(name: str):
    def wrap(cls: type[Decoder]) -> type[Decoder]:
        if name in DECODERS:
            raise RuntimeError(f"decoder {name!r} registered twice")
        cls.name = name
        DECODERS[name] = cls
        return cls

    return wrap


def _check_type(name: str, key: str, value: Any, default: Any) -> None:
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"decoder.{key} for {name!r} must be {type(default).__name__}, got {value!r}")


def resolve_decoder_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill a decoder section with its class defaults and validate keys and types."""
    name = cfg.get("type")
    if name not in DECODERS:
        raise ConfigError(f"unknown decoder.type {name!r}; registered decoders: {sorted(DECODERS)}")
    cls = DECODERS[name]
    unknown = set(cfg) - set(cls.DEFAULTS) - COMMON_KEYS
    if unknown:
        raise ConfigError(
            f"unknown key(s) {sorted(unknown)} for decoder {name!r}; valid keys: "
            f"{sorted(set(cls.DEFAULTS) | COMMON_KEYS)}"
        )
    out = {**cls.DEFAULTS, **cfg}
    for key, default in cls.DEFAULTS.items():
        _check_type(name, key, out[key], default)
    return out


def build_decoder(cfg: dict[str, Any], in_dims: list[int], tasks: list[str], grid: tuple[int, int]) -> Decoder:
    full = resolve_decoder_config(cfg)
    return DECODERS[full["type"]](full, in_dims, tasks, grid)
