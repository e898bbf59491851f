"""Checks shared by the optional sections of a train recipe (``class_balance``, ``feature_anchor``,
``rare_class_sampling``, ``depth_gradient_loss``): one wording for one mistake, whichever section."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mtl_perception.model.errors import ConfigError


def recipe_section(
    name: str, spec: Any, defaults: Mapping[str, Any], example: str, extra_keys: Iterable[str] = ()
) -> dict[str, Any] | None:
    """``spec`` with ``defaults`` filled in, or None when the section is off (None or False).

    A non-mapping or an unknown key raises a :class:`ConfigError` naming the section, what was given
    and (``example``, the valid keys) what is expected; ``extra_keys`` are valid keys without a default."""
    if spec is None or spec is False:
        return None
    if not isinstance(spec, dict):
        raise ConfigError(f"{name} must be a mapping such as {example}, got {spec!r}")
    valid = [*defaults, *extra_keys]
    unknown = set(spec) - set(valid)
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {sorted(unknown)}; valid: {sorted(valid)}")
    return {**defaults, **spec}


def positive_number(key: str, value: Any) -> float:
    """``value`` as a float if it is a number > 0 (booleans are not), else a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{key} must be a number > 0, got {value!r}")
    return float(value)
