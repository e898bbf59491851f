"""Errors raised by the model library (clear, user-facing messages)."""


class ConfigError(ValueError):
    """A model configuration is invalid. The message names the key and how to fix it."""


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded (missing file, wrong format, config mismatch)."""
