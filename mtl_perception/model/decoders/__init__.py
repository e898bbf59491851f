"""Decoder variants. Importing this package registers every variant in the registry."""

from mtl_perception.model.decoders import baseline, mlore  # noqa: F401

for _optional in ("moe", "taskexpert", "meco"):
    try:
        __import__(f"mtl_perception.model.decoders.{_optional}")
    except ModuleNotFoundError as _exc:  # variant module not written yet
        if _exc.name != f"mtl_perception.model.decoders.{_optional}":
            raise
